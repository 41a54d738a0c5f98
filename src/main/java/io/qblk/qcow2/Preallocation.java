package io.qblk.qcow2;

import java.util.Locale;

/** qemu-img's preallocation modes for qcow2. */
public enum Preallocation {
    /** Only the header, refcount structures and an empty L1 table. */
    OFF,
    /** Also every L2 table and a mapped (sparse) data cluster for every guest cluster. */
    METADATA,
    /** Like METADATA, and the data clusters are reserved with fallocate. */
    FALLOC,
    /** Like METADATA, and the data clusters are written with zeroes. */
    FULL;

    /** Parses "off", "metadata", "falloc" or "full". */
    public static Preallocation parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "off" -> OFF;
            case "metadata" -> METADATA;
            case "falloc" -> FALLOC;
            case "full" -> FULL;
            default -> throw new IllegalArgumentException("preallocation must be off, metadata, falloc or full: " + s);
        };
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
