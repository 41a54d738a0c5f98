package io.qblk.qcow2;

import java.util.Locale;

/**
 * What happens to the image file when a host cluster is freed (discard, write-zeroes with unmap,
 * copy-on-write of a compressed cluster, an old refcount table): qemu's {@code discard=} names.
 * Either way the cluster is freed inside the image and reused by later allocations.
 */
public enum DiscardMode {
    /** The file keeps the cluster's blocks (qblk before thin provisioning; the file never shrinks in {@code du}). */
    IGNORE,
    /**
     * The cluster's blocks go back to the host file system (fallocate PUNCH_HOLE|KEEP_SIZE), once the
     * metadata that referenced it is durable (docs/ordering.md R4/R7); the default.
     */
    UNMAP;

    /** {@code ignore}/{@code off} or {@code unmap}/{@code on}, as qemu accepts them. */
    public static DiscardMode parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "ignore", "off" -> IGNORE;
            case "unmap", "on" -> UNMAP;
            default -> throw new IllegalArgumentException("discard mode must be 'ignore' or 'unmap', not '" + s + "'");
        };
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
