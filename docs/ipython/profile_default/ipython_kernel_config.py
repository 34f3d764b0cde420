# The kernels that execute the tutorials during `make docs` (IPYTHONDIR=docs/ipython): no start-up banner
# about the local TCP transport between the build and its kernel.
c = get_config()  # noqa: F821
c.IPKernelApp.log_level = "ERROR"
