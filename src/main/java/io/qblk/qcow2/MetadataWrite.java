package io.qblk.qcow2;

import java.util.Locale;

/**
 * When the metadata a guest write changes (L2 entries, refcounts of newly allocated clusters, zero
 * flags) reaches the image file.
 *
 * <p>Either way the on-disk ordering rules hold, so a power loss never corrupts the image and never
 * loses a flushed write. The modes differ in what survives the death of the serving process while
 * the machine keeps running (kill -9, a crash): that is what ublk user recovery relies on, because
 * the kernel, and a filesystem mounted on the device, keep every write the old process completed.
 */
public enum MetadataWrite {
    /**
     * Changed metadata stays in the engine's cache until the next flush (or cache pressure). Fastest;
     * after the process dies, allocating writes completed since the last flush read as before them,
     * like a disk's volatile cache after a power loss. For NBD, tools and benchmarks.
     */
    WRITEBACK,
    /**
     * A write, zero or discard that changed metadata completes only after that metadata is durable:
     * the engine runs a flush (its three ordered phases) before returning, shared by every request
     * waiting at that moment (group commit). Writes into already-allocated clusters change no
     * metadata and pay nothing. Every completed request survives the process dying, so a mounted
     * filesystem keeps working across ublk user recovery. The default for ublk devices.
     */
    WRITETHROUGH;

    public static MetadataWrite parse(String s) {
        try {
            return valueOf(s.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown metadata mode '" + s + "' (expected writeback or writethrough)");
        }
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
