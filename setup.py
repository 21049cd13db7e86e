"""Packaging for minigpt2.

The runtime needs numpy, safetensors, regex, huggingface_hub and cffi. torch and transformers are
*references* used only by the tests and benchmarks: the package never imports them.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the C core (csrc/, see csrc/build_kernels.py) if this machine can; never fail the install.

    Without a C compiler, or if compiling fails, minigpt2 installs anyway and runs on its NumPy
    backend (saying so once when imported).
    """

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler at all, or a setup error: the package works without it
            self._skip(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            self._skip(e)

    def copy_file(self, infile, outfile, *args, **kwargs):
        """Install the built library by renaming a fresh copy over the old one. Copying over it in
        place would rewrite a file that running Python processes have mapped, and crash them."""
        partial = outfile + ".partial"
        _, copied = super().copy_file(infile, partial, *args, **kwargs)
        os.replace(partial, outfile)
        return outfile, copied

    def _skip(self, error):
        print(f"WARNING: minigpt2's C core was not built ({type(error).__name__}: {error}); "
              "minigpt2 will run on its NumPy backend", flush=True)
        self._remove_stale_libraries()

    def _remove_stale_libraries(self):
        """Delete the C core an earlier build left in build/ (pip builds in the source tree): the wheel takes
        everything there, so an old library would be installed, and run, although this build failed. In place
        (pip install -e), only the file this build would have written."""
        import glob

        for ext in self.extensions:
            target = self.get_ext_fullpath(ext.name)
            stale = {target}
            if not self.inplace:  # any ABI tag: _kernels.abi3.so, _kernels.cpython-311-x86_64-linux-gnu.so, ...
                stem = os.path.join(os.path.dirname(target), ext.name.rpartition(".")[2])
                stale.update(glob.glob(stem + ".*.so") + glob.glob(stem + ".*.pyd") + glob.glob(stem + ".so"))
            for path in sorted(stale):
                if os.path.isfile(path):
                    os.remove(path)
                    print(f"removed {path}, left by an earlier build, so that it is not installed", flush=True)


REFERENCE = [
    # PyPI's Linux torch wheels are CUDA builds that pull several GB of nvidia-* wheels: install the CPU build from
    # PyTorch's index first (README, "Test"); pip then keeps it, as it satisfies this pin.
    "torch==2.13.0",
    # 4.x keeps head_mask and tuple key/value caches, which minigpt2 mirrors; 5.x dropped head_mask.
    "transformers==4.57.6",
    "tokenizers",
    "tiktoken",
]
TEST = ["pytest>=7", "hypothesis>=6"]

setup(
    name="minigpt2",
    version="0.1.0",
    description="GPT-2 in readable NumPy, numerically identical to Hugging Face transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minigpt2", "minigpt2.*"]),
    package_data={"minigpt2": ["data/*"]},
    # The floors are what CI's "oldest" stage installs (pinned, on the oldest Python) and tests: .ci/oldest.sh,
    # docs/versions.md. numpy < 1.24 turns ragged lists into object arrays instead of raising; safetensors
    # < 0.4.4 writes an invalid header for a file without tensors; huggingface_hub < 0.23 does not keep a
    # partial download to resume.
    python_requires=">=3.9",
    install_requires=["numpy>=1.24", "safetensors>=0.4.4", "regex>=2022.1.18", "huggingface_hub>=0.23",
                      "cffi>=1.15"],
    classifiers=[
        "Programming Language :: Python :: 3",
        *[f"Programming Language :: Python :: 3.{minor}" for minor in range(9, 14)],
        "Programming Language :: C",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    extras_require={
        "test": TEST,
        "reference": REFERENCE,
        "dev": TEST + REFERENCE + ["psutil", "threadpoolctl", "matplotlib", "jupytext"],
        # ipywidgets: without it, tqdm (via huggingface_hub) prints "TqdmWarning: IProgress not found" in notebooks
        "tutorials": ["matplotlib", "jupytext", "jupyterlab", "ipywidgets"],
    },
    entry_points={"console_scripts": ["minigpt2=minigpt2.__main__:command"]},
    cffi_modules=["csrc/build_kernels.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
