"""Runs one docs scenario (tests/harness/doc_snippets.py) the way a reader would type it.

The blocks run in document order with bash, in a copy of the repository (the files a clone has:
tracked and untracked-but-not-ignored, so uncommitted docs are what is tested), with a PATH that
has kubectl and helm but not the test suite's virtualenv: what a block needs, an earlier block
of the scenario must install. Exported variables carry from one block to the next.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.doc_snippets import ROOT, Snippet
from tests.harness.tools import Tools

BLOCK_TIMEOUT_SECONDS = 420  # the clone scenario's pip install of the operator, cold


def copy_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if not source.is_file():  # deleted in the work tree, not yet in the index
            continue
        destination = target / os.fsdecode(name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    return target


@dataclass
class ScenarioRun:
    tools: Tools
    kubeconfig: Path
    redis_url: str
    workdir: Path
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repo = copy_repository(self.workdir / "repo")
        self.env_file = self.workdir / "env.sh"
        base_path = [str(self.tools.kubectl.parent), str(self.tools.helm.parent)]
        base_path += [p for p in os.environ.get("PATH", "").split(":") if p and ".venv" not in p]
        env_lines = {
            "PATH": ":".join(base_path),
            "KUBECONFIG": str(self.kubeconfig),
            "BULLFLOW_REDIS_URL": self.redis_url,
            "HOME": os.environ.get("HOME", "/root"),
        }
        self.env_file.write_text(
            "".join(f"export {key}={value!r}\n" for key, value in env_lines.items())
        )

    def _script(self, snippet: Snippet, save_env: bool) -> str:
        tail = f"\nexport -p > {self.env_file}\n" if save_env else ""
        return f"set -euo pipefail\nsource {self.env_file}\n{snippet.text}{tail}"

    def run(self, snippet: Snippet) -> str:
        assert snippet.directive is not None
        log = self.workdir / f"block-{snippet.line}.log"
        if snippet.directive.background:
            handle = log.open("wb")
            proc = subprocess.Popen(
                ["bash", "-c", self._script(snippet, save_env=False)],
                cwd=self.repo,
                env={},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.background.append(proc)
            return ""
        done = subprocess.run(
            ["bash", "-c", self._script(snippet, save_env=True)],
            cwd=self.repo,
            env={},
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
            check=False,
        )
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise AssertionError(
                f"{snippet.where} exited {done.returncode}:\n{snippet.text}\n--- output ---\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}{self.background_logs()}"
            )
        if snippet.directive.expect is not None:
            assert snippet.directive.expect in done.stdout, (
                f"{snippet.where}: output lacks {snippet.directive.expect!r}:\n{done.stdout}"
            )
        return done.stdout

    def background_logs(self) -> str:
        text = ""
        for log in sorted(self.workdir.glob("block-*.log")):
            text += f"\n--- {log.name} (last lines) ---\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-30:]
            )
        return text

    def stop(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.background:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
