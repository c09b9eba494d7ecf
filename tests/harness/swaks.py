"""swaks, Debian's SMTP Swiss Army knife, as the member's mail client."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class SwaksResult:
    returncode: int
    output: str

    def replies(self) -> list[str]:
        """Server lines ('<-' and '<~' for TLS), without the arrow."""
        return [re.sub(r"^\s*<[-~*]+\s*", "", line) for line in self.output.splitlines()
                if re.match(r"^\s*<[-~*]+ ", line)]

    def saw(self, text: str) -> bool:
        return any(text in r for r in self.replies())


def swaks(*args: str, timeout: float = 60) -> SwaksResult:
    binary = shutil.which("swaks")
    assert binary, "swaks is not installed (make test installs it)"
    proc = subprocess.run([binary, *args], capture_output=True, text=True,
                          timeout=timeout)
    return SwaksResult(proc.returncode, proc.stdout + proc.stderr)
