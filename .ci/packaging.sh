#!/usr/bin/env bash
# Stage "packaging": build the sdist and the wheel (the wheel is built from the sdist, so the sdist must carry
# csrc/ and the vocabulary), check what each holds, install each in a fresh venv and run the command line
# (.ci/user_checks.py). Then install the sdist on a machine without a C compiler (CC=false and no cc/gcc on
# PATH): the install must succeed and minigpt2 must say once that it runs on NumPy.
source "$(dirname "$0")/lib.sh"
src="$(fresh_source src)"
builder="$(fresh_venv builder "$(python_for 3.11)")"
"$builder/bin/pip" install -q build
(cd "$src" && "$builder/bin/python" -m build -o "$SCRATCH/dist" . >"$SCRATCH/build.log" 2>&1) || { cat "$SCRATCH/build.log"; exit 1; }
sdist="$(ls "$SCRATCH"/dist/minigpt2-*.tar.gz)"
wheel="$(ls "$SCRATCH"/dist/minigpt2-*.whl)"
echo "built $(basename "$sdist") and $(basename "$wheel")"
"$builder/bin/python" - "$sdist" "$wheel" <<'PY'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
in_sdist = [n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n]
in_wheel = zipfile.ZipFile(wheel).namelist()
need_sdist = ["csrc/build_kernels.py", "minigpt2/data/encoder.json.gz", "minigpt2/data/vocab.bpe.gz", "setup.py",
              "pyproject.toml", "README.md"]
missing = [n for n in need_sdist if n not in in_sdist]
missing += [f"csrc/*.{ext}" for ext in ("c", "h") if not any(n.startswith("csrc/") and n.endswith("." + ext)
                                                             for n in in_sdist)]
missing += [f"wheel: {n}" for n in ("minigpt2/data/encoder.json.gz", "minigpt2/data/vocab.bpe.gz")
            if n not in in_wheel]
if not any(n.startswith("minigpt2/_kernels") and n.endswith(".so") for n in in_wheel):
    missing.append("wheel: the C core minigpt2/_kernels*.so (it did not build from the sdist)")
if missing:
    sys.exit("missing from the packages: " + ", ".join(missing))
print("sdist carries csrc/ and the vocabulary; the wheel carries the built C core and the vocabulary")
PY

echo "-- the wheel, in a fresh venv"
venv="$(fresh_venv venv-wheel "$(python_for 3.11)")"
(cd "$SCRATCH" && "$venv/bin/pip" install -q "$wheel")
"$venv/bin/python" "$ROOT/.ci/user_checks.py" --backend c

echo "-- the sdist, in a fresh venv (the C core compiles)"
venv="$(fresh_venv venv-sdist "$(python_for 3.11)")"
(cd "$SCRATCH" && "$venv/bin/pip" install -q --no-binary minigpt2 "$sdist")
"$venv/bin/python" "$ROOT/.ci/user_checks.py" --backend c

echo "-- the sdist without a C compiler (CC=false, no cc/gcc/clang on PATH)"
nocc="$SCRATCH/nocc-bin"
mkdir -p "$nocc"
for dir in /usr/local/bin /usr/bin /bin; do
  for tool in "$dir"/*; do
    name="$(basename "$tool")"
    case "$name" in
      cc|c89|c99|gcc|gcc-*|*-gcc|*-gcc-*|clang|clang-*|tcc|cpp|cpp-*|*-cpp|*-cpp-*|ld|ld.*|*-ld|*-ld.*) continue ;;
    esac
    [ -e "$nocc/$name" ] || ln -s "$tool" "$nocc/$name"
  done
done
venv="$(fresh_venv venv-nocc "$(python_for 3.11)")"
if PATH="$nocc" command -v gcc cc >/dev/null 2>&1; then echo "a compiler is still on PATH"; exit 1; fi
(cd "$SCRATCH" && CC=false PATH="$venv/bin:$nocc" "$venv/bin/pip" install -q --no-binary minigpt2 "$sdist")
PATH="$venv/bin:$nocc" "$venv/bin/python" "$ROOT/.ci/user_checks.py" --backend numpy
