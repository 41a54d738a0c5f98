package io.qblk.target;

import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * What a frontend (ublk, NBD) serves: a block device of {@link #size()} bytes.
 *
 * <p>Offsets and lengths are bytes; frontends check them against the size and the 512-byte sector
 * before calling. All methods may be called concurrently from many virtual threads and block until
 * the operation is complete. Implementations: {@link NullTarget}, {@link RawTarget}, {@link Qcow2Target}.
 */
public interface BlockTarget extends Closeable {

    /** Virtual size in bytes (a multiple of 512). */
    long size();

    boolean readOnly();

    void read(long offset, MemorySegment dst) throws IOException;

    /**
     * Fills {@code plan} when reading {@code dst} at {@code offset} is one plain read of a file
     * descriptor that the caller may submit itself (a ublk tag links it to its commit, see
     * {@link io.qblk.io.FilePlan}); the caller then must {@code plan.release()} once that read has
     * completed or failed, and calls {@link #read} if it failed or came back short. False (nothing
     * held) when only {@link #read} can serve the request. The default: always false.
     */
    default boolean planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan) {
        return false;
    }

    /**
     * Fills {@code plan} when writing {@code src} at {@code offset} (without FUA) is one plain write of
     * a file descriptor that the caller may submit itself and complete the request once it has
     * succeeded (a ublk tag links it to its commit); the caller then must {@code plan.release()} once
     * that write has completed or failed, and calls {@link #write} if it failed or came back short.
     * A {@link #flush} that starts after the write completed, even before the release, makes it
     * durable (docs/ordering.md, W2). False (nothing held) when only {@link #write} can serve the
     * request. The default: always false.
     */
    default boolean planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan) {
        return false;
    }

    /** Writes {@code src}; with {@code fua} the data is durable when this returns. */
    void write(long offset, MemorySegment src, boolean fua) throws IOException;

    /** Makes every completed write durable. */
    void flush() throws IOException;

    /** The range's contents become unspecified (zeroes where the target can), space may be freed. */
    void discard(long offset, long length) throws IOException;

    /** The range reads as zeroes; with {@code mayUnmap} the target may free the space. */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException;

    /**
     * Allocation status of {@code [offset, offset + length)} as consecutive extents covering at
     * least the first byte (they may stop early, never overlap, never pass offset + length).
     */
    List<Extent> blockStatus(long offset, long length) throws IOException;

    /** A run of bytes with one allocation status. */
    record Extent(long offset, long length, boolean hole, boolean zero) {}

    /** The qemu metadata context giving the backing-chain depth that allocates each byte (0 = nowhere). */
    String ALLOCATION_DEPTH = "qemu:allocation-depth";
    /** Prefix of the qemu metadata contexts of persistent dirty bitmaps: {@code qemu:dirty-bitmap:NAME}. */
    String DIRTY_BITMAP = "qemu:dirty-bitmap:";

    /**
     * Metadata contexts besides {@code base:allocation} this target answers through
     * {@link #contextStatus}: {@link #ALLOCATION_DEPTH}, and {@link #DIRTY_BITMAP}NAME for each
     * consistent persistent bitmap of a qcow2 image.
     */
    default List<String> metaContexts() {
        return List.of(ALLOCATION_DEPTH);
    }

    /**
     * Status of {@code [offset, offset + length)} in metadata context {@code context}, as
     * consecutive runs covering at least the first byte: allocation depth (a target without a
     * backing chain allocates everything itself: depth 1), or 1 = dirty / 0 = clean for a bitmap.
     */
    default List<Status> contextStatus(String context, long offset, long length) throws IOException {
        if (context.equals(ALLOCATION_DEPTH)) return List.of(new Status(offset, length, 1));
        throw new IOException("unknown metadata context " + context);
    }

    /** A run of bytes with one value ({@code flags}) in a metadata context. */
    record Status(long offset, long length, int flags) {}

    /**
     * Why a target opened for writing refuses writes after all (a qcow2 image with its corrupt bit
     * set is served read-only), or null.
     */
    default String writeRefusal() {
        return null;
    }

    /** Null unless cache mode none was asked for and requests are buffered anyway; then why. */
    default String directDisabledReason() {
        return null;
    }

    @Override
    void close() throws IOException;
}
