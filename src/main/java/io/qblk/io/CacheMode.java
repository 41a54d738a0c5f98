package io.qblk.io;

import java.util.Locale;

/**
 * How an image file uses the host page cache, named as in QEMU's {@code -t}/{@code cache=} option.
 *
 * <ul>
 *   <li>{@link #WRITEBACK}: every read and write goes through the page cache (buffered pread/pwrite).
 *   <li>{@link #NONE}: requests whose buffer address, file offset and length are multiples of
 *       {@link DirectIoBackend#ALIGNMENT} bypass the page cache (O_DIRECT); the rest, such as a
 *       12-byte header update, stay buffered on a second descriptor. Falls back to WRITEBACK with a
 *       stated reason where the file system refuses O_DIRECT.
 * </ul>
 *
 * <p>Both modes are equally durable: a flush is fdatasync in either (O_DIRECT alone does not empty
 * the disk's volatile write cache).
 */
public enum CacheMode {
    WRITEBACK("writeback"),
    NONE("none");

    private final String label;

    CacheMode(String label) {
        this.label = label;
    }

    public String label() {
        return label;
    }

    /** Parses "none" or "writeback" (case-insensitive); anything else is an IllegalArgumentException. */
    public static CacheMode parse(String s) {
        String v = s.trim().toLowerCase(Locale.ROOT);
        for (CacheMode m : values()) if (m.label.equals(v)) return m;
        throw new IllegalArgumentException("unknown cache mode '" + s + "' (expected none or writeback)");
    }
}
