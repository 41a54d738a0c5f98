package io.qblk.target;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.qcow2.Qcow2Exception;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;

/**
 * The one mapping from a failed target call to the errno a frontend reports (ublk completes the
 * request with -errno; NBD narrows it to its fixed set of codes): a system call's errno as is
 * (ENOSPC stays ENOSPC, EROFS stays EROFS), a qcow2 error by its {@link Qcow2Exception.Kind}
 * (a refused or corrupt cluster is EIO), bad arguments EINVAL, anything else EIO.
 */
public final class TargetErrors {
    private TargetErrors() {}

    /** A positive errno for {@code t}. */
    public static int toErrno(Throwable t) {
        for (int depth = 0; t != null && depth < 8; depth++) {
            switch (t) {
                case ErrnoException e -> { return e.errno(); }
                case Qcow2Exception e -> { return e.kind().errno(); }
                case NoSuchFileException e -> { return Errno.ENOENT; }
                case AccessDeniedException e -> { return Errno.EACCES; }
                case IllegalArgumentException e -> { return Errno.EINVAL; }
                case IndexOutOfBoundsException e -> { return Errno.EINVAL; }
                case OutOfMemoryError e -> { return Errno.ENOMEM; }
                case UncheckedIOException e -> t = e.getCause();
                default -> {
                    // a wrapper (e.g. an IOException around an ErrnoException) keeps its cause's kind
                    if (t.getCause() == null || t.getCause() == t) return Errno.EIO;
                    t = t.getCause();
                }
            }
        }
        return Errno.EIO;
    }
}
