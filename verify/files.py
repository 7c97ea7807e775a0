"""Every file the project writes goes through here: atomically, so that an interrupt leaves the previous good files.

* `atomic_write_text` / `atomic_write_bytes` / `atomic_path`: the new content goes to a hidden temporary file in
  the same folder, is flushed to disk, and is renamed over the target (a rename within a filesystem is atomic):
  a reader, or a run killed at any moment, sees the old file or the new one, never a part of either.
* `staged_folder`: a folder whose files belong together (a checkpoint's tensors and record; an architecture's
  report, figures and checkpoint) is written complete into a hidden sibling and then swapped in as one unit
  (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames, with `recover` restoring the old folder if a
  kill falls between them).
* `folder_lock`: one writer per output folder; a second `verify report`/`train`/`bench` into the same folder
  is refused with a message (an exclusive `flock`, released by the kernel when the holder dies, so a killed
  run leaves no stale lock).
* `hook`: test points. ``VERIFY_TEST_HOOK=kill@POINT`` makes the process SIGKILL itself when it reaches POINT;
  ``pause@POINT`` makes it wait there until the file named by ``VERIFY_TEST_HOOK_RELEASE`` exists. The tests
  use them to interrupt a report at chosen moments; unset, they cost one dictionary look-up.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

from verify.errors import InputError

LOCK_NAME = ".verify.lock"
_TMP = ".tmp-"  # marks a temporary file (hidden, in the target's folder)
_STAGING = ".staging-"  # marks a folder being written before it is swapped in
_OLD = ".old-"  # marks a replaced folder awaiting removal (or restoration, see recover)


class FolderBusy(InputError):
    """Another verify command is writing to the same output folder."""


def hook(point: str) -> None:
    """Test point (see the module docstring); does nothing unless VERIFY_TEST_HOOK names this point."""
    spec = os.environ.get("VERIFY_TEST_HOOK")
    if not spec:
        return
    action, _, where = spec.partition("@")
    if where != point:
        return
    if action == "kill":
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        release = os.environ.get("VERIFY_TEST_HOOK_RELEASE", "")
        print(f"verify-test-hook: paused at {point}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 300
        while release and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)


def _hidden(target: Path, mark: str) -> Path:
    return target.parent / f".{target.name}{mark}{os.getpid()}-{secrets.token_hex(4)}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to (it keeps the suffix, so writers that infer the format
    from it, like matplotlib, work); on success it is flushed and renamed over `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}{_TMP}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        hook(f"before-replace:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(stage: Path, target: Path) -> None:
    """Replace the folder `target` by the complete folder `stage` as one unit."""
    hook(f"before-swap:{target.name}")
    if not target.exists() and not target.is_symlink():
        os.rename(stage, target)
    elif _exchange(stage, target):
        hook(f"after-swap:{target.name}")
        shutil.rmtree(stage, ignore_errors=True)  # `stage` now holds the old folder
    else:
        old = _hidden(target, _OLD)
        os.rename(target, old)
        hook(f"between-renames:{target.name}")
        os.rename(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def staged_folder(target: Path | str) -> Iterator[Path]:
    """An empty hidden folder beside `target`; fill it, and on success it replaces `target` as one unit. On any
    failure (an exception, Ctrl-C) it is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = _hidden(target, _STAGING)
    stage.mkdir()
    try:
        yield stage
        swap_in(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def link_or_copy_tree(src: Path, dst: Path) -> None:
    """Carry a folder over into a new one: hard links (files are only ever replaced, never written in place, so
    sharing an inode is safe), copies where links are not possible."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)


def scratch_path(target: Path | str) -> Path:
    """A hidden path beside `target` for work in progress (not created); `recover` removes it if a kill leaves it."""
    return _hidden(Path(target), _STAGING)


def recover(folder: Path | str, depth: int = 1) -> list[str]:
    """Tidy what killed runs left in `folder` and its sub-folders down to `depth` (call it holding the folder's
    lock): remove staging folders and temporary files; where a kill fell between the two renames of the fallback
    swap, restore the old folder."""
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for p in sorted(folder.iterdir()):
        if depth > 0 and p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
            done += [f"{p.name}/{d}" for d in recover(p, depth - 1)]
        name = p.name
        if not name.startswith("."):
            continue
        if _OLD in name:
            original = folder / name[1:name.index(_OLD)]
            if not original.exists():
                os.rename(p, original)
                done.append(f"restored {original.name}")
            else:
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {name}")
        elif _STAGING in name or _TMP in name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            done.append(f"removed {name}")
    return done


@contextlib.contextmanager
def folder_lock(folder: Path | str, command: str) -> Iterator[Path]:
    """Hold the output folder for one writer; a second one is refused (FolderBusy) with who holds it.

    The lock file itself is the one file written in place: its inode carries the lock, so it is never replaced.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS: no lock, files are still atomic
        yield folder
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusy(
                "output folder", str(folder), f"a folder no other verify command is writing to (held by {holder})",
                "wait until that run has finished, or pass another --out",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing releases the flock
