package io.qblk.qcow2;

import io.qblk.io.Errno;
import java.io.IOException;

/**
 * A qcow2 problem with its {@link Kind}: corrupt metadata, a feature this engine does not support,
 * a file that is no qcow2 image, bad caller input, a format limit, a refused backing file. The kind
 * travels with the exception so every frontend maps it the same way (its {@link Kind#errno()}).
 */
public class Qcow2Exception extends IOException {
    /** What went wrong, and the errno a block frontend reports for it. */
    public enum Kind {
        /** Metadata is inconsistent or malformed. */
        CORRUPT(Errno.EIO),
        /** A valid image uses something this engine does not implement. */
        UNSUPPORTED(Errno.EOPNOTSUPP),
        /** The file is not a qcow2 image at all. */
        NOT_QCOW2(Errno.EINVAL),
        /** The caller asked for something invalid (bad create option, non-empty file, ...). */
        INVALID_ARGUMENT(Errno.EINVAL),
        /** A limit of the format or of this engine was reached (64 PiB offsets, refcount table size). */
        LIMIT(Errno.EFBIG),
        /** The image may not be written now (writes refused after corruption, snapshots present, ...). */
        READ_ONLY(Errno.EROFS),
        /** The backing file named in the header does not exist. */
        BACKING_MISSING(Errno.ENOENT),
        /** The backing file named in the header is refused by policy (outside allowed directories, not a regular file). */
        BACKING_REFUSED(Errno.EACCES),
        /** A named thing the caller asked for does not exist (an internal snapshot). */
        NOT_FOUND(Errno.ENOENT);

        private final int errno;

        Kind(int errno) {
            this.errno = errno;
        }

        public int errno() {
            return errno;
        }
    }

    private final Kind kind;

    public Qcow2Exception(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public Qcow2Exception(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
