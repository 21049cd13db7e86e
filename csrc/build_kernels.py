"""Build the C core, ``minigpt2._kernels``, with cffi (out-of-line, API mode).

setup.py runs this through ``cffi_modules`` during ``pip install``; to (re)build in a source
checkout, run it directly:

    python csrc/build_kernels.py            # writes minigpt2/_kernels.*.so next to the package

The library is portable: it is built for the architecture's baseline (no -march=native), and the
kernels are compiled once more for each wider target (csrc/variant_*.c: AVX2 and AVX-512 on x86-64)
and chosen at run time by the CPU's features (csrc/dispatch.c), so a library built on one x86-64 runs on
any other: a wheel, a shared home directory.

Compiler flags, each probed first so that a compiler lacking one still builds the rest:
    -O3                      always (never -ffast-math: it breaks the accuracy of expf/tanhf and
                             lets the compiler reorder sums, so results would drift from NumPy's)
    -fno-trapping-math       the loops that call vexpf (GELU, attention's softmax) are vectorised only if
                             the compiler may evaluate a comparison or division for every element, where
                             the source chooses between two values; gcc's default (-ftrapping-math) keeps
                             such operations as written in case a program reads the floating-point
                             exception flags, which minigpt2 never does. It changes no value (clang's default)
    -pthread                 threads (csrc/parallel.c); without them the kernels run on one thread
    -march=$MINIGPT2_MARCH   only if set (e.g. "native" or "x86-64-v3"): raises the baseline, so the
                             library then runs only on such CPUs (for experiments, not for wheels)
    $MINIGPT2_CFLAGS         extra flags, e.g. "-fsanitize=address,undefined -g" (.ci/sanitize.sh)
$CC chooses the compiler (gcc or clang).
"""
import os
import shlex
import shutil
import sys
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "kernels.h")
# linear.c, attention.c and elementwise.c are compiled once per variant, through variant_*.c.
# The slowest to compile first: the three variants take about 20 s in a row (gcc 12, -O3), 12 on two cores.
SOURCES = ["variant_avx512.c", "variant_avx2.c", "variant_generic.c", "variant_neon.c", "dispatch.c", "parallel.c",
           "block.c"]


def cdef_from_header(path=HEADER):
    """The header without its preprocessor lines: what cffi's C parser reads as the cdef."""
    with open(path, encoding="utf-8") as f:
        return "".join(line for line in f if not line.lstrip().startswith("#") or line.startswith("#define"))


def compiler_accepts(flags, program="int main(void) { return 0; }\n"):
    """True if the C compiler compiles and links ``program`` with ``flags``."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(program)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:  # CompileError, LinkError, OSError: setuptools' own or, where cffi imported the standard
            return False   # library's distutils first (Python 3.9 with older setuptools), that one's classes
    return True


THREADS_PROBE = """
#include <pthread.h>
#include <stdatomic.h>
static atomic_int n;
static void *run(void *arg) { atomic_fetch_add(&n, 1); return arg; }
int main(void) {
    pthread_t t;
    if (pthread_create(&t, 0, run, 0) != 0) return 1;
    pthread_join(t, 0);
    return atomic_load(&n) == 1 ? 0 : 1;
}
"""


def compiler_flags():
    """(compile flags, link flags) for this compiler and machine."""
    compile_flags, link_flags = ["-O3"], []
    if not compiler_accepts([]):  # no working compiler at all (CC=false, none installed): the build will fail and
        return compile_flags, link_flags  # setup.py says so; a note about threads would only mislead
    if compiler_accepts(["-fno-trapping-math"]):
        compile_flags.append("-fno-trapping-math")
    march = os.environ.get("MINIGPT2_MARCH", "").strip()
    if march:
        if not compiler_accepts([f"-march={march}"]):
            raise RuntimeError(f"MINIGPT2_MARCH={march!r}: the C compiler does not accept -march={march}")
        compile_flags.append(f"-march={march}")
    if compiler_accepts(["-pthread"], THREADS_PROBE):
        compile_flags.append("-pthread")
        link_flags.append("-pthread")
    else:
        compile_flags.append("-DMINIGPT2_NO_THREADS")
        print("minigpt2: no POSIX threads with this compiler; the C kernels will run on one thread", file=sys.stderr)
    extra = shlex.split(os.environ.get("MINIGPT2_CFLAGS", ""))
    return compile_flags + extra, link_flags + extra


def compile_sources_in_parallel():
    """Let distutils compile an extension's C files side by side, one per core (it compiles them one after
    another). Changes the compile method of this platform's compiler class, in this build's process only."""
    import concurrent.futures

    import setuptools  # noqa: F401  (first: it decides which distutils "distutils" is)
    from distutils.ccompiler import new_compiler

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    owner = next(cls for cls in type(new_compiler()).__mro__ if "compile" in vars(cls))
    one_by_one = owner.compile
    if cores < 2 or getattr(one_by_one, "side_by_side", False):
        return

    def compile(self, sources, *args, **kwargs):
        if len(sources) < 2:
            return one_by_one(self, sources, *args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(min(cores, len(sources))) as pool:
            objects = pool.map(lambda source: one_by_one(self, [source], *args, **kwargs), sources)
            return [path for paths in objects for path in paths]

    compile.side_by_side = True
    owner.compile = compile


def make_ffibuilder(relative_paths):
    """The cffi builder; setup.py (which runs from the repository root) wants relative paths."""
    compile_flags, link_flags = compiler_flags()
    root = os.path.dirname(HERE)
    where = (lambda p: os.path.relpath(p, root)) if relative_paths else os.path.abspath
    builder = FFI()
    builder.cdef(cdef_from_header())
    builder.set_source(
        "minigpt2._kernels",
        '#include "kernels.h"',
        sources=[where(os.path.join(HERE, name)) for name in SOURCES],
        depends=[where(os.path.join(HERE, name)) for name in sorted(os.listdir(HERE))
                 if name.endswith((".h", ".c")) and name not in SOURCES],
        include_dirs=[where(HERE)],
        extra_compile_args=compile_flags,
        extra_link_args=link_flags,
    )
    return builder


if __name__ == "__main__":
    try:
        import setuptools  # noqa: F401  (cffi compiles with it; pip brings it to the builds it runs)
    except ImportError:
        sys.exit("csrc/build_kernels.py needs setuptools, which venvs of Python 3.12 and later come without: "
                 "pip install setuptools (or build with pip install -e ., which brings its own)")
    if not compiler_accepts([]):  # else cffi's traceback, ending in "CompileError: command 'gcc' failed"
        import sysconfig

        cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
        sys.exit(f"csrc/build_kernels.py: no working C compiler ({cc!r} cannot compile and link an empty program). "
                 f"Install one (Debian/Ubuntu: apt-get install build-essential python3-dev; macOS: xcode-select "
                 f"--install), or set CC to one; minigpt2 runs without it, on its NumPy backend")
compile_sources_in_parallel()
ffibuilder = make_ffibuilder(relative_paths=__name__ != "__main__")

if __name__ == "__main__":
    # Build in a scratch directory and copy the library into a package directory: by default this
    # checkout's minigpt2/ (.ci/sanitize.sh passes another one).
    package_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "minigpt2")
    with tempfile.TemporaryDirectory() as tmp:
        library = ffibuilder.compile(tmpdir=tmp, verbose=True)
        target = os.path.join(package_dir, os.path.basename(library))
        # A fresh file renamed into place: copying over a library that running processes have
        # mapped would change their code under them.
        shutil.copy(library, target + ".partial")
        os.replace(target + ".partial", target)
    # Another build's library (pip install -e writes _kernels.abi3.so, this script _kernels.cpython-3XX-...so)
    # would be imported instead of this one, or over it, whichever Python prefers: remove it.
    for name in os.listdir(package_dir):
        if name.startswith("_kernels.") and name.endswith((".so", ".pyd")) and name != os.path.basename(target):
            os.remove(os.path.join(package_dir, name))
            print(f"removed the older build {name}")
    print(f"built {target}")
