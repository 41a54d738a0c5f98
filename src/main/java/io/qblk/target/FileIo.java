package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.uring.UringFileBackend;

/**
 * How a raw or qcow2 target does its file I/O. Configuration: {@code qblk export --ublk --file-io},
 * {@code qblk ublk export/recover --file-io}, the service's {@code qblk.ublk.file-io}; the library
 * reads no environment.
 */
public enum FileIo {
    /** pread/pwrite/fdatasync on the calling thread ({@link PosixFileBackend}): NBD, tools. */
    SYSCALLS,
    /**
     * Through the io_uring bound to the calling thread ({@link UringFileBackend#openForCallerRing}):
     * under ublk that is the ring of the queue whose tag runs the request; unbound threads use syscalls.
     */
    CALLER_RING,
    /**
     * Reads and writes of at least {@link #LARGE} bytes as {@link #CALLER_RING}; smaller ones,
     * fdatasync and fallocate with syscalls on the tag's thread: the ublk default (measurements in
     * docs/ublk.md, "File I/O of a ublk device").
     */
    CALLER_RING_LARGE;

    /** The size from which {@link #CALLER_RING_LARGE} uses the ring: 128 KiB. */
    public static final long LARGE = 128 << 10;

    /** Below this many bytes a read or write uses syscalls even on a thread with a ring bound. */
    public long ringMinBytes() {
        return switch (this) {
            case SYSCALLS -> Long.MAX_VALUE;
            case CALLER_RING -> 0;
            case CALLER_RING_LARGE -> LARGE;
        };
    }

    /** Whether file I/O follows the caller's ring (for some sizes at least). */
    public boolean onCallerRing() {
        return this != SYSCALLS;
    }

    /**
     * The ublk file-I/O mode by its configuration name: {@code auto} (or empty: CALLER_RING when the
     * queue's ring thread carries the tag threads ({@link io.qblk.uring.VirtualCarrier}: nothing may
     * block that thread), else CALLER_RING_LARGE), {@code ring} (CALLER_RING, every size),
     * {@code pread} (SYSCALLS).
     */
    public static FileIo forUblk(String mode) {
        if (mode == null || mode.isEmpty() || mode.equals("auto"))
            return io.qblk.uring.VirtualCarrier.available() ? CALLER_RING : CALLER_RING_LARGE;
        return switch (mode) {
            case "pread" -> SYSCALLS;
            case "ring" -> CALLER_RING;
            default -> throw new IllegalArgumentException("ublk file I/O '" + mode + "': expected auto, ring or pread");
        };
    }
}
