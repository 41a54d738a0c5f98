package io.qblk.uring;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.io.DirectIoBackend;
import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import io.qblk.io.LibC;
import io.qblk.io.PosixFileBackend;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Opens an existing image file as an {@link IoBackend} in a given {@link CacheMode} and {@link AioMode}:
 * the choice between syscall backends (io.qblk.io) and io_uring ones lives here, above both.
 */
public final class FileBackends {
    /** Ring size of a file's own ring thread: room for a queue depth of 128 without backlog. */
    static final int RING_ENTRIES = 128;

    private FileBackends() {}

    /**
     * Opens {@code path}. WRITEBACK + POSIX is a plain {@link PosixFileBackend}; any other combination
     * may return a {@link DirectIoBackend} (cache NONE) and/or descriptors served by a ring thread of
     * the file's own, stopped when the backend closes. When the file system refuses O_DIRECT, cache
     * NONE still opens, with every request buffered and {@link DirectIoBackend#directDisabledReason()} set.
     */
    public static IoBackend open(Path path, boolean readOnly, CacheMode cache, AioMode aio) throws IOException {
        if (aio == AioMode.POSIX) {
            PosixFileBackend buffered = PosixFileBackend.open(path, readOnly);
            if (cache == CacheMode.WRITEBACK) return buffered;
            try {
                PosixFileBackend direct;
                try {
                    direct = PosixFileBackend.openSibling(buffered, LibC.O_DIRECT);
                } catch (ErrnoException e) {
                    if (e.errno() != Errno.EINVAL) throw e;
                    return new DirectIoBackend(buffered, null, "the file system refuses O_DIRECT (" + e.getMessage() + ")", null);
                }
                return new DirectIoBackend(buffered, direct, null, null);
            } catch (IOException | RuntimeException e) {
                buffered.close();
                throw e;
            }
        }
        RingThread ring = RingThread.start("uring-" + path.getFileName(), RingOptions.defaults().withEntries(RING_ENTRIES));
        UringFileBackend buffered = null, direct = null;
        try {
            buffered = UringFileBackend.open(ring, path, readOnly, false);
            if (cache == CacheMode.WRITEBACK) return new DirectIoBackend(buffered, null, null, ring);
            direct = UringFileBackend.openSibling(ring, buffered);
            String refused = setDirect(direct.fd());
            if (refused != null) {
                direct.close();
                return new DirectIoBackend(buffered, null, refused, ring);
            }
            return new DirectIoBackend(buffered, direct, null, ring);
        } catch (IOException | RuntimeException e) {
            if (direct != null) direct.close();
            if (buffered != null) buffered.close();
            ring.close();
            throw e;
        }
    }

    /**
     * Opens {@code path} for I/O through the calling thread's io_uring ({@link UringFileBackend#openForCallerRing},
     * the ublk queues' rings): cache WRITEBACK is that backend itself; NONE is a {@link DirectIoBackend}
     * over two such descriptors, the second with O_DIRECT (buffered only, with the reason, where the
     * file system refuses it). Zeroing then goes through the backend too (nothing blocks a ring thread
     * that carries the caller).
     */
    public static IoBackend openOnCallerRing(Path path, boolean readOnly, long ringMinBytes, CacheMode cache) throws IOException {
        UringFileBackend buffered = UringFileBackend.openForCallerRing(path, readOnly, ringMinBytes);
        if (cache == CacheMode.WRITEBACK) return buffered;
        UringFileBackend direct = null;
        try {
            direct = UringFileBackend.openSiblingForCallerRing(buffered);
            String refused = setDirect(direct.fd());
            if (refused != null) {
                direct.close();
                return new DirectIoBackend(buffered, null, refused, null);
            }
            return new DirectIoBackend(buffered, direct, null, null);
        } catch (IOException | RuntimeException e) {
            if (direct != null) direct.close();
            buffered.close();
            throw e;
        }
    }

    /** Turns on O_DIRECT for an open descriptor; returns null, or why the file system refuses it. */
    static String setDirect(int fd) throws ErrnoException {
        int fl = LibC.fcntl(fd, LibC.F_GETFL, 0);
        if (fl < 0) throw new ErrnoException("fcntl F_GETFL", LibC.errno());
        if (LibC.fcntl(fd, LibC.F_SETFL, fl | LibC.O_DIRECT) < 0) {
            int e = LibC.errno();
            if (e == Errno.EINVAL) return "the file system refuses O_DIRECT (fcntl F_SETFL: EINVAL)";
            throw new ErrnoException("fcntl F_SETFL O_DIRECT", e);
        }
        return null;
    }
}
