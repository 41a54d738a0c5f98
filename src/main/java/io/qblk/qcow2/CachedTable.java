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
 *
 * <p>Pages (docs/ordering.md R18): the cluster is split into pages of {@link #PAGE} bytes (one page
 * when the cluster is smaller); every change records its generation in its page's {@code pageGen},
 * so a flush writes only the pages changed since {@code cleanGen} (all of them while {@code fresh}).
 * Every change of the bytes goes through {@link #setEntry}, {@link #setPair} or {@link #setRefcount}:
 * the arrays are private, so nothing else can change them without marking a page.
 */
final class CachedTable {
    static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    enum Kind { L2, REFBLOCK }

    final long offset;
    final Kind kind;
    /** Bytes per write-back page: the O_DIRECT alignment (cache=none writes must be multiples of it). */
    static final int PAGE = 4096;

    private final long[] entries;   // L2: the table's 8-byte words as on disk
    /** L2: {@link #entries} as a segment, for bulk copies (null for a refcount block). */
    private final MemorySegment entrySegment;
    /** Words per L2 entry: 1, or 2 with extended L2 (entry at 2i, subcluster bitmap at 2i+1). */
    final int stride;
    /** Extended L2: odd while a writer changes an entry/bitmap pair (a seqlock for lock-free pair reads). */
    private volatile int seq;
    private final byte[] raw;       // refcount block
    /** log2 of the page size: min({@link #PAGE}, cluster size). */
    private final int pageShift;
    /** The {@code dirtyGen} of the last change of each page (0: unchanged since loaded or created). */
    private final int[] pageGen;
    int dirtyGen;
    int cleanGen;
    boolean fresh;
    int pins;
    volatile boolean referenced = true;

    private CachedTable(long offset, Kind kind, long[] entries, byte[] raw, int stride) {
        this.offset = offset;
        this.kind = kind;
        this.entries = entries;
        this.entrySegment = entries != null ? MemorySegment.ofArray(entries) : null;
        this.stride = stride;
        this.raw = raw;
        int bytes = entries != null ? entries.length * 8 : raw.length;
        this.pageShift = Integer.numberOfTrailingZeros(Math.min(PAGE, bytes));
        this.pageGen = new int[Math.max(1, bytes >>> pageShift)];
    }

    static CachedTable l2(long offset, MemorySegment bytes, int clusterSize, int stride) {
        long[] e = new long[clusterSize / 8];
        if (bytes != null) for (int i = 0; i < e.length; i++) e[i] = bytes.get(BE_LONG, i * 8L);
        return new CachedTable(offset, Kind.L2, e, null, stride);
    }

    static CachedTable refblock(long offset, MemorySegment bytes, int clusterSize) {
        byte[] r = new byte[clusterSize];
        if (bytes != null) MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, 0, r, 0, clusterSize);
        return new CachedTable(offset, Kind.REFBLOCK, null, r, 1);
    }

    boolean dirty() { return dirtyGen != cleanGen || fresh; }

    /** Records a change of the byte at {@code byteOffset} (a new generation for its page). */
    private void changed(int byteOffset) {
        pageGen[byteOffset >>> pageShift] = ++dirtyGen;
    }

    /** Bytes per page: min({@link #PAGE}, cluster size). */
    int pageBytes() { return 1 << pageShift; }

    int pageCount() { return pageGen.length; }

    /** Under meta: page {@code p} must be written by the next flush (changed since the last completed write, or never written). */
    boolean pageDirty(int p) {
        return fresh || pageGen[p] - cleanGen > 0;
    }

    /** Number of L2 entries. */
    int entryCount() { return entries.length / stride; }

    /** Lock-free read of an L2 entry (the first word of an extended one). */
    long entry(int i) { return (long) LONGS.getAcquire(entries, i * stride); }

    /** Extended L2, under the metadata lock: the subcluster bitmap of entry i. */
    long bitmapLocked(int i) { return (long) LONGS.getAcquire(entries, i * 2 + 1); }

    /** Extended L2, lock-free: entry i and its bitmap as one consistent pair. */
    L2Entry.Pair pair(int i) {
        while (true) {
            int s = seq;
            if ((s & 1) == 0) {
                long e = (long) LONGS.getAcquire(entries, i * 2);
                long b = (long) LONGS.getAcquire(entries, i * 2 + 1);
                VarHandle.loadLoadFence();
                if (seq == s) return new L2Entry.Pair(e, b);
            }
            Thread.onSpinWait();
        }
    }

    /** Write of an L2 entry, keeping an extended entry's bitmap (caller holds the metadata lock). */
    void setEntry(int i, long v) {
        if (stride == 2) setPair(i, v, bitmapLocked(i));
        else {
            LONGS.setRelease(entries, i, v);
            changed(i * 8);
        }
    }

    /** Extended L2, under the metadata lock: sets entry i and its bitmap together (lock-free readers see both or neither). */
    void setPair(int i, long e, long bm) {
        seq = seq + 1;
        VarHandle.storeStoreFence();
        LONGS.setRelease(entries, i * 2, e);
        LONGS.setRelease(entries, i * 2 + 1, bm);
        seq = seq + 1;
        changed(i * 16); // entry and bitmap: 16 bytes, never across a page
    }

    /** Copies the cluster's on-disk form into {@code dst}. */
    void serialize(MemorySegment dst) {
        serializePages(0, pageGen.length, dst);
    }

    /**
     * Under the metadata lock: copies the on-disk form of pages [from, to) into {@code dst} (page
     * {@code from} at byte 0). Every change of an entry is made under that lock too, so a plain bulk
     * copy (byte-swapped to big-endian in one pass) sees them all: no per-word acquire is needed.
     */
    void serializePages(int from, int to, MemorySegment dst) {
        int start = from << pageShift, end = to << pageShift;
        if (kind == Kind.L2) {
            MemorySegment.copy(entrySegment, ValueLayout.JAVA_LONG, start, dst, BE_LONG, 0, (end - start) / 8);
        } else {
            MemorySegment.copy(raw, start, dst, ValueLayout.JAVA_BYTE, 0, end - start);
        }
    }

    /** A copy of a refcount block's bytes as on disk. */
    byte[] refcountBytes() { return raw.clone(); }

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
            changed(p); // at most 8 bytes, aligned to their size: never across a page
        } else {
            int bitPos = i * bits, mask = ((1 << bits) - 1) << (bitPos & 7);
            int b = raw[bitPos >>> 3] & 0xff;
            raw[bitPos >>> 3] = (byte) ((b & ~mask) | (((int) v << (bitPos & 7)) & mask));
            changed(bitPos >>> 3);
        }
    }
}
