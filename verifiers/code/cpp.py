"""C++ behind the same sandbox API: ``run_program(source, language="cpp")``.

The C++ source is wrapped in a small Python driver that runs *inside* the sandbox (same
namespaces, uid, rlimits): it writes the source into the scratch directory, compiles it with
``g++ -O2 -std=c++17`` and replaces itself with the binary (``execv``), so the program keeps the
driver's stdin/stdout/stderr and limits. A compiler error exits with status 1 and the compiler's
message on stderr after a ``compile_error:`` line, which the sandbox turns into the reason
``compile_error``. Compilation gets ``CPP_COMPILE_ALLOWANCE_S`` extra seconds of wall time (and
of CPU for the driver); the binary runs under the original CPU limit again.
"""
from __future__ import annotations

import shutil

COMPILER = "g++"
COMPILE_FLAGS = ("-O2", "-std=c++17", "-pipe")
COMPILE_ERROR_MARKER = "compile_error:"

_DRIVER = '''import os, resource, subprocess, sys
source = {source!r}
with open("main.cpp", "w") as f:
    f.write(source)
done = subprocess.run([{compiler!r}, *{flags!r}, "-o", "main", "main.cpp"], stdin=subprocess.DEVNULL, capture_output=True)
if done.returncode != 0:
    sys.stderr.write({marker!r} + "\\n" + done.stderr.decode("utf-8", "replace"))
    sys.stderr.flush()
    os._exit(1)
sys.stdout.flush()
cpu = {cpu_time_s}  # the program's own CPU limit again (compilation had an allowance)
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
os.execv("./main", ["./main"])
'''


def compiler_available() -> bool:
    return shutil.which(COMPILER) is not None


def cpp_driver(source: str, cpu_time_s: float) -> str:
    """The Python program that compiles and runs ``source`` inside the sandbox (the binary gets ``cpu_time_s`` of CPU)."""
    cpu = max(1, int(-(-cpu_time_s // 1)))
    return _DRIVER.format(source=source, compiler=COMPILER, flags=list(COMPILE_FLAGS), marker=COMPILE_ERROR_MARKER, cpu_time_s=cpu)
