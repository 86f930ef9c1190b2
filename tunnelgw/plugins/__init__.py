"""
tunnelgw's plugin package.

Other distributions add login modules and authorization policies by
shipping a module in C{tunnelgw/plugins/} (without C{__init__.py} files in
C{tunnelgw/} or C{tunnelgw/plugins/}) that defines objects providing
C{twisted.plugin.IPlugin} and C{tunnelgw.interfaces.ILoginModuleFactory}
(or C{IPolicyFactory}).  See docs/security.md, "Writing a plugin", and
examples/tunnelgw-example-plugin.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821
__all__: list[str] = []
