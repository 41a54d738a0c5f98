package io.qblk.qcow2;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * One cluster of metadata held in the cache: an L2 table (entries as longs, readable without a
 * lock) or a refcount block (raw big-endian bytes, used only under the metadata lock).
 *
 * <p>Write-back state, all guarded by the image's metadata lock: {@code dirtyGen} counts changes,
 * {@code cleanGen} is the change count last written; {@code fresh} means the cluster has never been
 * written, so nothing on disk may point to it yet; {@code pins} keeps it from eviction while an
 * allocating write is in flight.
 */
final class CachedTable {
    static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    enum Kind { L2, REFBLOCK }

    final long offset;
    final Kind kind;
    final long[] entries;   // L2
    final byte[] raw;       // refcount block
    int dirtyGen;
    int cleanGen;
    boolean fresh;
    int pins;
    volatile boolean referenced = true;

    private CachedTable(long offset, Kind kind, long[] entries, byte[] raw) {
        this.offset = offset;
        this.kind = kind;
        this.entries = entries;
        this.raw = raw;
    }

    static CachedTable l2(long offset, MemorySegment bytes, int clusterSize) {
        long[] e = new long[clusterSize / 8];
        if (bytes != null) for (int i = 0; i < e.length; i++) e[i] = bytes.get(BE_LONG, i * 8L);
        return new CachedTable(offset, Kind.L2, e, null);
    }

    static CachedTable refblock(long offset, MemorySegment bytes, int clusterSize) {
        byte[] r = new byte[clusterSize];
        if (bytes != null) MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, 0, r, 0, clusterSize);
        return new CachedTable(offset, Kind.REFBLOCK, null, r);
    }

    boolean dirty() { return dirtyGen != cleanGen || fresh; }

    void markDirty() { dirtyGen++; }

    /** Lock-free read of an L2 entry. */
    long entry(int i) { return (long) LONGS.getAcquire(entries, i); }

    /** Write of an L2 entry (caller holds the metadata lock). */
    void setEntry(int i, long v) {
        LONGS.setRelease(entries, i, v);
        dirtyGen++;
    }

    /** Copies the cluster's on-disk form into {@code dst}. */
    void serialize(MemorySegment dst) {
        if (kind == Kind.L2) {
            for (int i = 0; i < entries.length; i++) dst.set(BE_LONG, i * 8L, entry(i));
        } else {
            MemorySegment.copy(raw, 0, dst, ValueLayout.JAVA_BYTE, 0, raw.length);
        }
    }

    // ---- refcount block entries of 2^order bits (sub-byte widths: bit 0 is the least significant) ----

    long refcount(int i, int order) {
        int bits = 1 << order;
        if (bits >= 8) {
            int n = bits / 8, p = i * n;
            long v = 0;
            for (int k = 0; k < n; k++) v = (v << 8) | (raw[p + k] & 0xff);
            return v;
        }
        int bitPos = i * bits;
        return ((raw[bitPos >>> 3] & 0xff) >>> (bitPos & 7)) & ((1 << bits) - 1);
    }

    void setRefcount(int i, int order, long v) {
        int bits = 1 << order;
        if (bits >= 8) {
            int n = bits / 8, p = i * n;
            for (int k = n - 1; k >= 0; k--) {
                raw[p + k] = (byte) v;
                v >>>= 8;
            }
        } else {
            int bitPos = i * bits, mask = ((1 << bits) - 1) << (bitPos & 7);
            int b = raw[bitPos >>> 3] & 0xff;
            raw[bitPos >>> 3] = (byte) ((b & ~mask) | (((int) v << (bitPos & 7)) & mask));
        }
        dirtyGen++;
    }
}
