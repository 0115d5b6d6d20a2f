"""pykmr: kernel map-reductions a_i = Reduction_j F(x_i, y_j, params) on CPU (and GPU),
without storing the N x M matrix, with autodiff of any order."""

from pykmr._kmr import __version__, num_precompiled, num_threads, set_num_threads

__all__ = ["__version__", "num_precompiled", "num_threads", "set_num_threads"]


def cmake_prefix_path() -> str:
    """Folder to put in CMAKE_PREFIX_PATH so that C++ projects can find_package(kmr)."""
    import os

    return os.path.dirname(os.path.abspath(__file__))


__all__ += ["cmake_prefix_path"]


def set_verbose(verbose: bool) -> None:
    """pykeops.set_verbose: False silences the compile log lines (as KMR_QUIET=1), True restores them."""
    import os

    os.environ["KMR_QUIET"] = "0" if verbose else "1"


class _Config:
    """pykeops.config-style attributes that client libraries probe (read-only views of pykmr's state)."""

    @property
    def gpu_available(self) -> bool:
        from pykmr import _kmr

        return bool(_kmr.cuda_gpu_available())

    @property
    def verbose(self) -> bool:
        import os

        return os.environ.get("KMR_QUIET", "0") in ("", "0")

    @property
    def version(self) -> str:
        return __version__


config = _Config()
__all__ += ["set_verbose", "config"]


def __getattr__(name):
    """pykmr.torch, pykmr.numpy and pykmr.dask load on first use (torch and dask are optional)."""
    if name in ("torch", "numpy", "dask"):
        import importlib

        return importlib.import_module(f"pykmr.{name}")
    raise AttributeError(f"module 'pykmr' has no attribute '{name}'")
