"""
tunnelgw's plugin package.

Other distributions add adapters, upstream kinds, login modules and
authorization policies by shipping a module in C{tunnelgw/plugins/}
(without C{__init__.py} files in C{tunnelgw/} or C{tunnelgw/plugins/})
that defines objects providing C{twisted.plugin.IPlugin} and one of
C{tunnelgw.interfaces.IAdapterFactory}, C{IUpstreamKind},
C{ILoginModuleFactory} or C{IPolicyFactory} (found by
L{tunnelgw.registry}).  See docs/architecture.md, "Extension points",
and the packages in examples/.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821
__all__: list[str] = []
