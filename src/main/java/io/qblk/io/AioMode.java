package io.qblk.io;

import java.util.Locale;

/**
 * How an image file's I/O is issued, named as in QEMU's {@code -i}/{@code aio=} option.
 *
 * <ul>
 *   <li>{@link #POSIX}: blocking pread/pwrite on the calling thread. A virtual thread pins its carrier
 *       for the duration of the call, so at most as many requests are in flight as there are carriers.
 *   <li>{@link #IO_URING}: each request becomes an io_uring SQE on a ring thread owned by the file; the
 *       calling virtual thread parks until the completion arrives, so many requests can be in flight.
 * </ul>
 */
public enum AioMode {
    POSIX("posix"),
    IO_URING("io_uring");

    private final String label;

    AioMode(String label) {
        this.label = label;
    }

    public String label() {
        return label;
    }

    /** Parses "posix" (alias "threads", QEMU's name for its thread-pool pread) or "io_uring". */
    public static AioMode parse(String s) {
        String v = s.trim().toLowerCase(Locale.ROOT);
        if (v.equals("threads")) return POSIX;
        for (AioMode m : values()) if (m.label.equals(v)) return m;
        throw new IllegalArgumentException("unknown I/O mode '" + s + "' (expected posix or io_uring)");
    }
}
