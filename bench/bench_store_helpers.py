"""Page-cache helpers shared by the benchmarks."""

import os


def drop_cache(paths):
    """Evict the files' pages from the OS page cache (clean pages only, hence the sync)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_below(root):
    return [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs]
