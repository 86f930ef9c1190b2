// TunnelSocket as an ES module (tunnelsocket.js sets globalThis.TunnelSocket).
import "./tunnelsocket.js";

const TunnelSocket = globalThis.TunnelSocket;
export { TunnelSocket };
export default TunnelSocket;
