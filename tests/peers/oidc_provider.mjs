// A real OpenID Connect provider (npm's oidc-provider) for the jwks_uri
// and introspection tests: client_credentials, JWT access tokens for
// urn:tunnelgw:jwt, opaque ones (introspectable, revocable) for
// urn:tunnelgw:opaque.  Its signing keys come from JWKS_FILE (private JWKs;
// keys[0] signs): a rotation is a restart with a new keys[0].
//   PORT=… JWKS_FILE=… JWT_TTL=… node oidc_provider.mjs   → prints "ready URL"
import Provider, { errors } from 'oidc-provider';
import { readFileSync } from 'node:fs';

const PORT = Number(process.env.PORT);
const JWT_TTL = Number(process.env.JWT_TTL || 300);
const JWT = 'urn:tunnelgw:jwt';
const OPAQUE = 'urn:tunnelgw:opaque';

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  jwks: JSON.parse(readFileSync(process.env.JWKS_FILE, 'utf8')),
  clients: [{
    client_id: 'gw-test', client_secret: 'gw-secret', grant_types: ['client_credentials'],
    response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['tunnel'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => JWT,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource === JWT) {
          return { scope: 'tunnel', audience: JWT, accessTokenTTL: JWT_TTL, accessTokenFormat: 'jwt',
                   jwt: { sign: { alg: 'RS256' } } };
        }
        if (resource === OPAQUE) {
          return { scope: 'tunnel', audience: OPAQUE, accessTokenTTL: 300, accessTokenFormat: 'opaque' };
        }
        throw new errors.InvalidTarget();
      },
    },
  },
});
provider.listen(PORT, '127.0.0.1', () => console.log(`ready http://127.0.0.1:${PORT}`));
