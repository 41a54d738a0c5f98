package io.qblk.qcow2;

import io.qblk.io.DirectIoBackend;
import io.qblk.uring.FileBackends;
import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * A qcow2 image (version 2 or 3) opened for reading and writing, safe for many concurrent
 * (virtual) threads. See docs/qcow2-engine.md and docs/ordering.md.
 *
 * <p>Locks: {@code meta} guards every in-memory metadata structure and is never held across I/O;
 * {@code flushLock} serializes flushes; {@code exclusive} is taken shared by every data operation
 * and exclusively by check and close only.
 */
public final class Qcow2Image implements Closeable {
    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO_FLAG = 1L;
    static final long RT_MASK = ~511L;

    static final int UNALLOCATED = 0, NORMAL = 1, ZERO_PLAIN = 2, ZERO_ALLOC = 3, COMPRESSED_CLUSTER = 4;

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final int MAX_CHAIN_DEPTH = 16;

    final IoBackend file;
    private final boolean ownsFile;
    final String filename;
    final Qcow2Header h;
    final int cs;
    final int clusterBits;
    final int l2Bits;
    final int l2Mask;
    final int rOrder;
    final int rbBits;      // log2(refcount entries per block)
    final long rbMask;
    final long vsize;
    private final boolean openedReadOnly;
    private volatile String writeRefusal;
    private volatile IOException poisoned;

    final long[] l1;
    private final BitSet l1Dirty = new BitSet();
    long[] rt;
    long rtOffset;
    int rtClusters;
    private boolean rtRelocated;
    private final BitSet rtDirty = new BitSet();

    final ReentrantLock meta = new ReentrantLock();
    private final ReentrantLock flushLock = new ReentrantLock();
    private final MetadataWrite metadataWrite;
    /** Guest-visible mapping changes made so far (L2 entries set by writes, zeroes, discards); guarded by meta. */
    private long mappingChanges;
    /** How many of them a successful flush has written to the file (in rule order); guarded by flushLock. */
    private long committedChanges;
    /**
     * Frees whose dropping L2/L1 entries a commit wrote without the final sync (rule R4 waits for
     * that sync): applied after the next flush, whose phase-A sync covers those writes. Guarded by flushLock.
     */
    private List<long[]> unsyncedFrees = new ArrayList<>();
    private final EngineStats stats = new EngineStats();
    final SharedExclusiveLock exclusive = new SharedExclusiveLock();
    final ConcurrentHashMap<Long, CachedTable> l2Cache = new ConcurrentHashMap<>();
    final ConcurrentHashMap<Long, CachedTable> rbCache = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<Long, CompletableFuture<CachedTable>> loading = new ConcurrentHashMap<>();
    private volatile long cachedBytes; // written under meta, read without it
    private final long cacheBudget;
    private final HashMap<Long, InFlight> inflight = new HashMap<>();
    final HashMap<Long, MetadataKind> metaKinds = new HashMap<>();
    private ArrayList<long[]> pendingFrees = new ArrayList<>();
    long freeHint;
    private volatile boolean unsyncedWrites;
    private final IoEpochs epochs = new IoEpochs();
    final BufferPool clusterPool;
    private final MemorySegment zeroCluster;

    final List<long[]> snapshotL1s = new ArrayList<>(); // {offset, entries}
    long snapshotTableBytes;

    private final Qcow2Image backingImage;
    private final IoBackend backingRaw;
    private final long backingSize;
    private volatile boolean closed;
    /** Set while check repairs an image: metadata may be written although the image is marked corrupt. */
    volatile boolean repairing;

    /** Waiters for a guest cluster whose allocating write is in flight. */
    private static final class InFlight {
        final CountDownLatch done = new CountDownLatch(1);

        void await() throws IOException {
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted waiting for a concurrent allocation");
            }
        }
    }

    // ------------------------------------------------------------------ open

    public static Qcow2Image open(Path path, OpenOptions options) throws IOException {
        return open(path, options, 0);
    }

    private static Qcow2Image open(Path path, OpenOptions options, int depth) throws IOException {
        IoBackend f = FileBackends.open(path, options.readOnly(), options.cacheMode(), options.aio());
        try {
            Path parent = path.toAbsolutePath().getParent();
            return new Qcow2Image(f, true, path.toString(), parent, options, depth);
        } catch (Throwable t) {
            f.close();
            throw t;
        }
    }

    /** Opens an image on a backend the caller keeps owning; a relative backing file name resolves against the current directory. */
    public static Qcow2Image open(IoBackend file, OpenOptions options) throws IOException {
        return new Qcow2Image(file, false, file.toString(), null, options, 0);
    }

    /** Like {@link #open(IoBackend, OpenOptions)}, with {@code imagePath} naming the image and locating relative backing files. */
    public static Qcow2Image open(IoBackend file, OpenOptions options, Path imagePath) throws IOException {
        return new Qcow2Image(file, false, imagePath.toString(), imagePath.toAbsolutePath().getParent(), options, 0);
    }

    private Qcow2Image(IoBackend file, boolean ownsFile, String filename, Path dir, OpenOptions o, int depth) throws IOException {
        this.file = file;
        this.ownsFile = ownsFile;
        this.filename = filename;
        if (!o.readOnly() && file.readOnly()) throw new IOException(filename + ": file is read-only, cannot open for writing");
        long fsize = file.size();
        byte[] probe = readBytes(file, 0, (int) Math.min(Qcow2Header.PROBE_BYTES, Math.max(fsize, 0)));
        if (probe.length < Qcow2Header.PROBE_BYTES) probe = Arrays.copyOf(probe, Qcow2Header.PROBE_BYTES);
        int bits = Qcow2Header.clusterBitsOf(probe, fsize);
        byte[] c0 = readBytes(file, 0, 1 << bits);
        this.h = Qcow2Header.parse(c0, fsize);
        this.cs = h.clusterSize();
        this.clusterBits = h.clusterBits;
        this.l2Bits = clusterBits - 3;
        this.l2Mask = (1 << l2Bits) - 1;
        this.rOrder = h.refcountOrder;
        this.rbBits = clusterBits + 3 - rOrder;
        this.rbMask = (1L << rbBits) - 1;
        this.vsize = h.size;
        if (cs < DirectIoBackend.ALIGNMENT) {
            // A page could hold a metadata cluster and a data cluster: keep every request buffered, so
            // a direct write never races a buffered one within a page (docs/qcow2-engine.md, "Cache modes").
            file.disableDirect("cluster size " + cs + " is below the " + DirectIoBackend.ALIGNMENT + "-byte direct I/O alignment");
        }
        this.openedReadOnly = o.readOnly();
        this.cacheBudget = Math.max(o.cacheBytes(), 8L * cs);
        this.metadataWrite = o.metadataWrite();
        this.clusterPool = new BufferPool(cs, 64);
        this.zeroCluster = Arena.ofAuto().allocate(cs, 4096);

        this.l1 = readLongs(file, h.l1TableOffset, h.l1Size);
        for (int i = 0; i < l1.length; i++) {
            long off = l1[i] & OFFSET_MASK;
            if ((off & (cs - 1)) != 0)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt image: L1 entry " + i + " (L2 table offset " + off + ") is not cluster aligned");
        }
        this.rtOffset = h.refcountTableOffset;
        this.rtClusters = h.refcountTableClusters;
        this.rt = readLongs(file, rtOffset, (int) ((long) rtClusters * cs / 8));
        for (int i = 0; i < rt.length; i++) {
            long off = rt[i] & RT_MASK;
            if ((off & (cs - 1)) != 0 || off < 0 || off >= Qcow2Header.MAX_HOST_OFFSET)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt image: refcount table entry " + i + " (" + off + ") is not a valid cluster offset");
        }
        readSnapshotTable();

        // Metadata map for the overlap check: first come wins, later conflicts surface as overlaps.
        metaKinds.put(0L, MetadataKind.HEADER);
        markRange(h.l1TableOffset, (long) h.l1Size * 8, MetadataKind.L1);
        markRange(rtOffset, (long) rtClusters * cs, MetadataKind.REFCOUNT_TABLE);
        if (h.nbSnapshots > 0) markRange(h.snapshotsOffset, snapshotTableBytes, MetadataKind.SNAPSHOT_TABLE);
        for (long[] s : snapshotL1s) markRange(s[0], s[1] * 8, MetadataKind.SNAPSHOT_L1);
        if (h.nbBitmaps > 0) markRange(h.bitmapDirectoryOffset, h.bitmapDirectorySize, MetadataKind.BITMAPS);
        for (long e : rt) if ((e & RT_MASK) != 0) metaKinds.putIfAbsent(e & RT_MASK, MetadataKind.REFCOUNT_BLOCK);
        for (long e : l1) if ((e & OFFSET_MASK) != 0) metaKinds.putIfAbsent(e & OFFSET_MASK, MetadataKind.L2);

        // Backing chain.
        Qcow2Image bImg = null;
        IoBackend bRaw = null;
        long bSize = 0;
        if (h.backingFile != null && (o.backingPolicy() != BackingPolicy.NOT_OPENED || !o.readOnly())) {
            if (depth >= MAX_CHAIN_DEPTH) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "backing chain deeper than " + MAX_CHAIN_DEPTH + " images (a loop?)");
            Path bp = Path.of(h.backingFile);
            if (!bp.isAbsolute() && dir != null) bp = dir.resolve(bp);
            bp = o.backingPolicy().admit(h.backingFile, bp);
            if (!Files.exists(bp))
                throw new Qcow2Exception(Qcow2Exception.Kind.BACKING_MISSING, "backing file " + h.backingFile + " not found (looked at " + bp + ")");
            String fmt = h.backingFormat;
            if (fmt == null) {
                try (IoBackend probeFile = PosixFileBackend.open(bp, true)) {
                    fmt = Qcow2Header.hasMagic(probeFile) ? "qcow2" : "raw";
                }
            }
            switch (fmt) {
                case "qcow2" -> {
                    bImg = open(bp, o.withReadOnly(true).withCacheBytes(Math.max(cacheBudget / 2, 8L * cs)), depth + 1);
                    bSize = bImg.virtualSize();
                }
                case "raw" -> {
                    bRaw = FileBackends.open(bp, true, o.cacheMode(), o.aio());
                    bSize = bRaw.size();
                }
                default -> throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported backing file format " + fmt + " (only qcow2 and raw)");
            }
        }
        this.backingImage = bImg;
        this.backingRaw = bRaw;
        this.backingSize = bSize;

        try {
            if (!openedReadOnly) prepareForWriting();
        } catch (Throwable t) {
            closeBacking();
            throw t;
        }
    }

    private void prepareForWriting() throws IOException {
        if ((h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0) {
            writeRefusal = filename + ": image is marked corrupt; only check with repair may modify it";
            return;
        }
        if (h.nbSnapshots > 0)
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "image has " + h.nbSnapshots + " internal snapshot(s): opening for writing is not supported (open read-only)");
        if (h.version >= 3 && h.autoclear != 0) {
            // We do not maintain bitmaps (or anything else behind an autoclear bit): clear them all.
            h.autoclear = 0;
            writeFeatureBits();
        }
        if ((h.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0) {
            CheckReport r = ImageCheck.run(this, RepairMode.ALL);
            if (r.corruptions() > 0)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": dirty image could not be repaired (" + r.corruptions() + " corruptions remain)");
            h.incompatible &= ~Qcow2Header.INCOMPAT_DIRTY;
            writeFeatureBits();
        }
    }

    private void markRange(long off, long len, MetadataKind k) {
        for (long c = off & ~(long) (cs - 1); c < off + len; c += cs) metaKinds.putIfAbsent(c, k);
    }

    private void readSnapshotTable() throws IOException {
        if (h.nbSnapshots == 0) return;
        long pos = h.snapshotsOffset;
        for (int i = 0; i < h.nbSnapshots; i++) {
            ByteBuffer b = ByteBuffer.wrap(readBytes(file, pos, 40)).order(ByteOrder.BIG_ENDIAN);
            long l1off = b.getLong(0);
            long l1n = Integer.toUnsignedLong(b.getInt(8));
            int idLen = b.getShort(12) & 0xffff, nameLen = b.getShort(14) & 0xffff;
            long extra = Integer.toUnsignedLong(b.getInt(36));
            if (extra > 1024) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: entry " + i + " has " + extra + " bytes of extra data");
            if ((l1off & (cs - 1)) != 0 || l1off <= 0 || l1n > Qcow2Header.MAX_L1_ENTRIES || l1off >= Qcow2Header.MAX_HOST_OFFSET)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: entry " + i + " has a bad L1 table (offset " + l1off + ", " + l1n + " entries)");
            snapshotL1s.add(new long[] {l1off, l1n});
            pos += (40 + extra + idLen + nameLen + 7) & ~7L;
            if (pos - h.snapshotsOffset > (64L << 20)) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: larger than 64 MiB");
        }
        snapshotTableBytes = pos - h.snapshotsOffset;
    }

    static byte[] readBytes(IoBackend f, long off, int len) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(Math.max(len, 1), 4096).asSlice(0, len);
            f.read(off, s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    static long[] readLongs(IoBackend f, long off, int n) throws IOException {
        long[] out = new long[n];
        if (n == 0) return out;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate((long) n * 8, 4096);
            f.read(off, s);
            for (int i = 0; i < n; i++) out[i] = s.get(CachedTable.BE_LONG, i * 8L);
        }
        return out;
    }

    // ------------------------------------------------------------------ properties

    public long virtualSize() { return vsize; }

    /** Live counters of this image's metadata work (cache, allocations, flushes). */
    public EngineStats stats() { return stats; }
    public int clusterSize() { return cs; }

    /**
     * Null when the image file uses O_DIRECT for aligned requests or cache mode NONE was not asked
     * for; otherwise why every request goes through the page cache.
     */
    public String directDisabledReason() {
        return file.directDisabledReason();
    }
    public boolean readOnly() { return openedReadOnly || writeRefusal != null; }
    /** Why an image opened for writing refuses writes (corrupt bit, corruption found), or null. */
    public String writeRefusal() { return writeRefusal; }
    int version() { return h.version; }
    boolean hasBacking() { return backingImage != null || backingRaw != null; }
    boolean corruptBit() { return (h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0; }
    boolean openedReadOnly() { return openedReadOnly; }

    int typeOf(long e) {
        if ((e & COMPRESSED) != 0) return COMPRESSED_CLUSTER;
        long off = e & OFFSET_MASK;
        if (h.version >= 3 && (e & ZERO_FLAG) != 0) return off != 0 ? ZERO_ALLOC : ZERO_PLAIN;
        return off != 0 ? NORMAL : UNALLOCATED;
    }

    private long hostOf(long e, long g) throws MetadataCorruption {
        long off = e & OFFSET_MASK;
        if ((off & (cs - 1)) != 0)
            throw new MetadataCorruption("L2 entry for guest offset " + (g << clusterBits) + " points to unaligned host offset " + off);
        return off;
    }

    private void checkRange(long offset, long length) throws IOException {
        if (closed) throw new IOException(filename + ": image is closed");
        if (offset < 0 || length < 0 || offset > vsize || length > vsize - offset)
            throw new IOException(filename + ": range " + offset + "+" + length + " is outside the virtual size " + vsize);
    }

    private void checkWritable() throws IOException {
        if (openedReadOnly) throw new Qcow2Exception(Qcow2Exception.Kind.READ_ONLY, filename + ": image is opened read-only");
        String r = writeRefusal;
        if (r != null) throw new Qcow2Exception(Qcow2Exception.Kind.READ_ONLY, r);
        IOException p = poisoned;
        if (p != null) throw new IOException(filename + ": an earlier flush failed (" + p.getMessage() + "); reopen the image", p);
    }

    // ------------------------------------------------------------------ cache

    long lookup(long g) throws IOException {
        long l1e = (long) LONGS.getAcquire(l1, (int) (g >>> l2Bits));
        long off = l1e & OFFSET_MASK;
        if (off == 0) return 0;
        CachedTable t = l2Cache.get(off);
        if (t == null) t = load(off, CachedTable.Kind.L2);
        else {
            stats.cacheHits.increment();
            if (!t.referenced) t.referenced = true;
        }
        return t.entry((int) (g & l2Mask));
    }

    CachedTable load(long off, CachedTable.Kind kind) throws IOException {
        ConcurrentHashMap<Long, CachedTable> map = kind == CachedTable.Kind.L2 ? l2Cache : rbCache;
        while (true) {
            CachedTable t = map.get(off);
            if (t != null) return t;
            CompletableFuture<CachedTable> f = new CompletableFuture<>();
            CompletableFuture<CachedTable> other = loading.putIfAbsent(off, f);
            if (other != null) {
                try {
                    t = other.join();
                    if (t.kind == kind) return t;
                    continue;
                } catch (CompletionException ce) {
                    if (ce.getCause() instanceof IOException io) throw io;
                    throw ce;
                }
            }
            try {
                t = map.get(off);
                if (t == null) {
                    if ((off & (cs - 1)) != 0 || off >= Qcow2Header.MAX_HOST_OFFSET)
                        throw new MetadataCorruption((kind == CachedTable.Kind.L2 ? "L2 table" : "refcount block") + " offset " + off + " is invalid");
                    MemorySegment buf = clusterPool.acquire();
                    try {
                        stats.cacheMisses.increment();
                        file.read(off, buf);
                        t = kind == CachedTable.Kind.L2 ? CachedTable.l2(off, buf, cs) : CachedTable.refblock(off, buf, cs);
                    } finally {
                        clusterPool.release(buf);
                    }
                    meta.lock();
                    try {
                        CachedTable ex = map.get(off);
                        if (ex != null) t = ex;
                        else {
                            map.put(off, t);
                            cachedBytes += cs;
                            evictLocked();
                        }
                    } finally {
                        meta.unlock();
                    }
                }
                f.complete(t);
                return t;
            } catch (Throwable ex) {
                f.completeExceptionally(ex);
                throw ex;
            } finally {
                loading.remove(off, f);
            }
        }
    }

    private void evictLocked() {
        if (cachedBytes <= cacheBudget) return;
        long target = cacheBudget - cacheBudget / 8;
        for (int pass = 0; pass < 2 && cachedBytes > target; pass++) {
            for (ConcurrentHashMap<Long, CachedTable> map : List.of(l2Cache, rbCache)) {
                for (var it = map.values().iterator(); it.hasNext() && cachedBytes > target; ) {
                    CachedTable t = it.next();
                    if (t.pins > 0 || t.dirty()) continue;
                    if (t.referenced) {
                        t.referenced = false;
                        continue;
                    }
                    it.remove();
                    cachedBytes -= cs;
                }
            }
        }
    }

    private boolean overBudget() {
        return cachedBytes > cacheBudget;
    }

    /** Under meta: the L2 table for guest cluster g, allocating an empty one when the L1 entry is 0. */
    CachedTable l2ForWriteLocked(long g) throws IOException {
        int l1i = (int) (g >>> l2Bits);
        long off = l1[l1i] & OFFSET_MASK;
        if (off == 0) {
            long c = allocClusterLocked(MetadataKind.L2);
            CachedTable t = CachedTable.l2(c, null, cs);
            t.fresh = true;
            l2Cache.put(c, t);
            cachedBytes += cs;
            LONGS.setRelease(l1, l1i, c | COPIED);
            l1Dirty.set((int) ((long) l1i * 8 / cs));
            return t;
        }
        CachedTable t = l2Cache.get(off);
        if (t == null) throw new NeedLoad(off, CachedTable.Kind.L2);
        t.referenced = true;
        return t;
    }

    // ------------------------------------------------------------------ refcounts

    CachedTable refblockLocked(long clusterIndex) {
        long bi = clusterIndex >>> rbBits;
        if (bi >= rt.length) return null;
        long boff = rt[(int) bi] & RT_MASK;
        if (boff == 0) return null;
        CachedTable b = rbCache.get(boff);
        if (b == null) throw new NeedLoad(boff, CachedTable.Kind.REFBLOCK);
        b.referenced = true;
        return b;
    }

    long refcountLocked(long clusterIndex) {
        CachedTable b = refblockLocked(clusterIndex);
        return b == null ? 0 : b.refcount((int) (clusterIndex & rbMask), rOrder);
    }

    /**
     * Under meta: takes a free host cluster (refcount 0 → 1) for metadata of kind {@code kind}
     * (null = guest data). May throw NeedLoad before changing anything but fresh refcount blocks.
     */
    long allocClusterLocked(MetadataKind kind) throws IOException {
        long idx = freeHint;
        while (true) {
            long bi = idx >>> rbBits;
            if (bi >= rt.length) {
                growRefcountTableLocked();
                idx = freeHint;
                continue;
            }
            long boff = rt[(int) bi] & RT_MASK;
            if (boff == 0) {
                createRefblockLocked(bi, idx);
                idx++;
                continue;
            }
            CachedTable b = rbCache.get(boff);
            if (b == null) throw new NeedLoad(boff, CachedTable.Kind.REFBLOCK);
            b.referenced = true;
            long end = (bi + 1) << rbBits;
            for (; idx < end; idx++) {
                if (b.refcount((int) (idx & rbMask), rOrder) == 0) {
                    long off = idx << clusterBits;
                    if (off >= Qcow2Header.MAX_HOST_OFFSET) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": image file reached the 64 PiB offset limit");
                    MetadataKind existing = metaKinds.get(off);
                    if (existing != null)
                        throw new MetadataCorruption("cluster at " + off + " holds the " + existing.label + " but its refcount is 0");
                    b.setRefcount((int) (idx & rbMask), rOrder, 1);
                    stats.allocations.increment();
                    if (kind != null) metaKinds.put(off, kind);
                    freeHint = idx + 1;
                    return off;
                }
            }
            freeHint = Math.max(freeHint, idx);
        }
    }

    private void createRefblockLocked(long bi, long idx) throws MetadataCorruption {
        long off = idx << clusterBits;
        MetadataKind existing = metaKinds.get(off);
        if (existing != null) throw new MetadataCorruption("cluster at " + off + " holds the " + existing.label + " but no refcount block covers it");
        CachedTable b = CachedTable.refblock(off, null, cs);
        b.fresh = true;
        b.setRefcount((int) (idx & rbMask), rOrder, 1);
        rbCache.put(off, b);
        cachedBytes += cs;
        rt[(int) bi] = off;
        rtDirty.set((int) (bi * 8 / cs));
        metaKinds.put(off, MetadataKind.REFCOUNT_BLOCK);
    }

    /** Under meta: a bigger refcount table, placed with its new refcount blocks right after the covered range. */
    private void growRefcountTableLocked() throws IOException {
        int oldLen = rt.length;
        int perCluster = cs / 8;
        long base = (long) oldLen << rbBits;
        long newLen = Math.max(oldLen + perCluster, (long) oldLen * 3 / 2);
        newLen = (newLen + perCluster - 1) / perCluster * perCluster;
        long n = newLen / perCluster;
        if (n * cs > Qcow2Header.MAX_REFTABLE_BYTES) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": refcount table would exceed 8 MiB");
        long entries = 1L << rbBits;
        long k = 1;
        while (k + n > k * entries) k++;
        if (oldLen + k > newLen) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": cannot grow the refcount table");
        long[] nt = Arrays.copyOf(rt, (int) newLen);
        CachedTable[] blocks = new CachedTable[(int) k];
        for (int j = 0; j < k; j++) {
            long off = (base + j) << clusterBits;
            CachedTable b = CachedTable.refblock(off, null, cs);
            b.fresh = true;
            blocks[j] = b;
            rbCache.put(off, b);
            cachedBytes += cs;
            nt[oldLen + j] = off;
            metaKinds.put(off, MetadataKind.REFCOUNT_BLOCK);
        }
        for (long c = base; c < base + k + n; c++) blocks[(int) ((c >>> rbBits) - oldLen)].setRefcount((int) (c & rbMask), rOrder, 1);
        pendingFrees.add(new long[] {rtOffset, rtClusters});
        rt = nt;
        rtOffset = (base + k) << clusterBits;
        rtClusters = (int) n;
        rtRelocated = true;
        for (long c = 0; c < n; c++) metaKinds.put(rtOffset + (c << clusterBits), MetadataKind.REFCOUNT_TABLE);
        freeHint = Math.max(freeHint, base + k + n);
    }

    /** Under meta: refcount - 1; returns false if the refcount was already 0. */
    boolean decrementLocked(long clusterIndex) {
        CachedTable b = refblockLocked(clusterIndex);
        if (b == null) return false;
        int i = (int) (clusterIndex & rbMask);
        long v = b.refcount(i, rOrder);
        if (v == 0) return false;
        b.setRefcount(i, rOrder, v - 1);
        if (v == 1) {
            freeHint = Math.min(freeHint, clusterIndex);
            metaKinds.remove(clusterIndex << clusterBits);
        }
        return true;
    }

    /** Under meta: queues the host clusters an L2 entry references for release after the next flush. */
    private void queueFreeLocked(long e) {
        switch (typeOf(e)) {
            case NORMAL, ZERO_ALLOC -> pendingFrees.add(new long[] {e & OFFSET_MASK, 1});
            case COMPRESSED_CLUSTER -> {
                long[] c = compressedRange(e);
                long first = c[0] >>> clusterBits, last = (c[0] + c[1] - 1) >>> clusterBits;
                pendingFrees.add(new long[] {first << clusterBits, last - first + 1});
            }
            default -> {}
        }
    }

    /** {host offset, byte length} of a compressed cluster's data. */
    long[] compressedRange(long e) {
        int x = 62 - (clusterBits - 8);
        long off = e & ((1L << x) - 1);
        long sectors = (e & ~COPIED & ~COMPRESSED) >>> x;
        long len = (sectors + 1) * 512 - (off & 511);
        return new long[] {off, len};
    }

    // ------------------------------------------------------------------ read

    public void read(long offset, MemorySegment dst) throws IOException {
        long len = dst.byteSize();
        checkRange(offset, len);
        exclusive.lockShared();
        int slot = epochs.enter();
        try {
            long pos = 0;
            while (pos < len) {
                long gOff = offset + pos;
                long g = gOff >>> clusterBits;
                int in = (int) (gOff & (cs - 1));
                long n = Math.min(cs - in, len - pos);
                long e = lookup(g);
                int type = typeOf(e);
                if (type == NORMAL) {
                    long host = hostOf(e, g);
                    long run = n;
                    long next = g + 1;
                    while (pos + run < len) {
                        long e2 = lookup(next);
                        if (typeOf(e2) != NORMAL || (e2 & OFFSET_MASK) != host + ((next - g) << clusterBits)) break;
                        run += Math.min(cs, len - pos - run);
                        next++;
                    }
                    file.read(host + in, dst.asSlice(pos, run));
                    pos += run;
                    continue;
                }
                MemorySegment part = dst.asSlice(pos, n);
                switch (type) {
                    case UNALLOCATED -> readBacking(gOff, part);
                    case COMPRESSED_CLUSTER -> readCompressed(e, in, part);
                    default -> part.fill((byte) 0);
                }
                pos += n;
            }
        } catch (MetadataCorruption c) {
            throw corrupted(c);
        } finally {
            epochs.exit(slot);
            exclusive.unlockShared();
        }
    }

    private void readBacking(long gOff, MemorySegment part) throws IOException {
        long n = part.byteSize();
        if (!hasBacking() || gOff >= backingSize) {
            part.fill((byte) 0);
            return;
        }
        long m = Math.min(n, backingSize - gOff);
        if (backingImage != null) backingImage.read(gOff, part.asSlice(0, m));
        else backingRaw.read(gOff, part.asSlice(0, m));
        if (m < n) part.asSlice(m).fill((byte) 0);
    }

    private void readCompressed(long e, int in, MemorySegment part) throws IOException {
        MemorySegment full = clusterPool.acquire();
        try {
            decompress(e, full);
            part.copyFrom(full.asSlice(in, part.byteSize()));
        } finally {
            clusterPool.release(full);
        }
    }

    void decompress(long e, MemorySegment out) throws IOException {
        long[] r = compressedRange(e);
        if (r[1] > 2L * cs + 1024 || r[0] + r[1] > Qcow2Header.MAX_HOST_OFFSET)
            throw new MetadataCorruption("compressed cluster at " + r[0] + " has an impossible size " + r[1]);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment in = a.allocate(r[1], 4096);
            file.read(r[0], in);
            Inflater inf = new Inflater(true);
            try {
                inf.setInput(in.asByteBuffer());
                ByteBuffer ob = out.asByteBuffer();
                while (ob.hasRemaining()) {
                    int got = inf.inflate(ob);
                    if (got == 0 && (inf.finished() || inf.needsInput() || inf.needsDictionary())) break;
                }
                if (ob.hasRemaining())
                    throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": compressed cluster at " + r[0] + " decompresses to only " + ob.position() + " bytes");
            } catch (DataFormatException ex) {
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": compressed cluster at " + r[0] + " is not valid deflate data: " + ex.getMessage());
            } finally {
                inf.end();
            }
        }
    }

    // ------------------------------------------------------------------ write

    public void write(long offset, MemorySegment src) throws IOException {
        long len = src.byteSize();
        checkRange(offset, len);
        checkWritable();
        boolean mapped = false;
        exclusive.lockShared();
        try {
            long pos = 0;
            while (pos < len) {
                long gOff = offset + pos;
                long g = gOff >>> clusterBits;
                int in = (int) (gOff & (cs - 1));
                long n = Math.min(cs - in, len - pos);
                int slot = epochs.enter();
                try {
                    long e = lookup(g);
                    if (typeOf(e) == NORMAL && (e & COPIED) != 0) {
                        long host = hostOf(e, g);
                        long run = n;
                        long next = g + 1;
                        while (pos + run < len) {
                            long e2 = lookup(next);
                            if (typeOf(e2) != NORMAL || (e2 & COPIED) == 0 || (e2 & OFFSET_MASK) != host + ((next - g) << clusterBits)) break;
                            run += Math.min(cs, len - pos - run);
                            next++;
                        }
                        String overlap = dataOverlap(host, in + run);
                        if (overlap != null) throw new MetadataCorruption(overlap);
                        file.write(host + in, src.asSlice(pos, run));
                        unsyncedWrites = true; // after completion: a flush that starts later must sync
                        pos += run;
                        continue;
                    }
                } finally {
                    epochs.exit(slot);
                }
                if (allocatingWrite(g, in, src.asSlice(pos, n))) {
                    pos += n;
                    mapped = true;
                }
            }
        } catch (MetadataCorruption c) {
            throw corrupted(c);
        } finally {
            exclusive.unlockShared();
        }
        if (mapped && metadataWrite == MetadataWrite.WRITETHROUGH) commitMetadata();
        else if (overBudget()) flush();
    }

    /**
     * Writes into guest cluster g when it is not a plain allocated cluster: allocates a host
     * cluster (or reuses a preallocated zero cluster), writes the whole cluster (old contents or
     * zeroes or backing data around {@code part}), then maps it. Returns false if the caller must
     * retry (another writer got there first).
     */
    private boolean allocatingWrite(long g, int in, MemorySegment part) throws IOException {
        InFlight mine = null;
        CachedTable t = null;
        long old = 0, host = 0;
        boolean fresh = false;
        while (true) {
            InFlight wait = null;
            NeedLoad need = null;
            meta.lock();
            try {
                checkWritable();
                wait = inflight.get(g);
                if (wait == null) {
                    t = l2ForWriteLocked(g);
                    old = t.entry((int) (g & l2Mask));
                    int type = typeOf(old);
                    if (type == NORMAL && (old & COPIED) != 0) return false;
                    if (type == ZERO_ALLOC && (old & COPIED) != 0) {
                        host = hostOf(old, g);
                        MetadataKind k = metaKinds.get(host);
                        if (k != null) throw new MetadataCorruption("guest data write at host offset " + host + " would overwrite the " + k.label);
                        fresh = false;
                    } else {
                        host = allocClusterLocked(null);
                        fresh = true;
                    }
                    mine = new InFlight();
                    inflight.put(g, mine);
                    t.pins++;
                    break;
                }
            } catch (NeedLoad nl) {
                need = nl;
            } finally {
                meta.unlock();
            }
            if (need != null) load(need.offset, need.kind);
            else wait.await();
            if (wait != null) return false;
        }

        MemorySegment buf = null;
        try {
            MemorySegment out = part;
            long at = host;
            if (in != 0 || part.byteSize() != cs) {
                if (oldReadsAsZero(g, old)) {
                    // The rest of the cluster must read as zero: say so with one fallocate instead of
                    // writing a cluster of zeroes around the guest bytes (R1 covers both writes).
                    file.zeroRange(host, cs);
                    at = host + in;
                } else {
                    buf = clusterPool.acquire();
                    fillOldContents(g, old, buf);
                    buf.asSlice(in, part.byteSize()).copyFrom(part);
                    out = buf;
                }
            }
            file.write(at, out);
            unsyncedWrites = true;
        } catch (Throwable ex) {
            meta.lock();
            try {
                // Unreferenced: give it back after the next flush (a leak at worst if we crash first).
                if (fresh) pendingFrees.add(new long[] {host, 1});
                t.pins--;
                inflight.remove(g);
            } finally {
                meta.unlock();
            }
            mine.done.countDown();
            throw ex;
        } finally {
            if (buf != null) clusterPool.release(buf);
        }
        meta.lock();
        try {
            int idx = (int) (g & l2Mask);
            long cur = t.entry(idx);
            t.setEntry(idx, host | COPIED);
            mappingChanges++;
            if (fresh || typeOf(cur) != ZERO_ALLOC || (cur & OFFSET_MASK) != host) queueFreeLocked(cur);
            t.pins--;
            inflight.remove(g);
        } finally {
            meta.unlock();
        }
        mine.done.countDown();
        return true;
    }

    /** True when fillOldContents would produce only zeroes for guest cluster g with entry {@code old}. */
    private boolean oldReadsAsZero(long g, long old) {
        return switch (typeOf(old)) {
            case UNALLOCATED -> !hasBacking() || (g << clusterBits) >= backingSize;
            case ZERO_PLAIN, ZERO_ALLOC -> true;
            default -> false;
        };
    }

    private void fillOldContents(long g, long old, MemorySegment buf) throws IOException {
        switch (typeOf(old)) {
            case UNALLOCATED -> readBacking(g << clusterBits, buf);
            case NORMAL -> file.read(hostOf(old, g), buf); // shared cluster: copy on write
            case COMPRESSED_CLUSTER -> decompress(old, buf);
            default -> buf.fill((byte) 0);
        }
        long gOff = g << clusterBits;
        if (gOff + cs > vsize) buf.asSlice(vsize - gOff).fill((byte) 0);
    }

    // ------------------------------------------------------------------ zeroes and discard

    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        checkRange(offset, length);
        checkWritable();
        zeroRange(offset, length, mayUnmap, false);
    }

    public void discard(long offset, long length) throws IOException {
        checkRange(offset, length);
        checkWritable();
        zeroRange(offset, length, true, true);
    }

    private void zeroRange(long offset, long length, boolean mayUnmap, boolean discard) throws IOException {
        long end = offset + length;
        long firstFull = (offset + cs - 1) & ~(long) (cs - 1);
        long lastFull = end == vsize ? end : end & ~(long) (cs - 1); // a partial last cluster at the image end counts as full
        if (firstFull >= lastFull) { // within one cluster
            if (!discard) writeZeroBytes(offset, length);
            return;
        }
        if (!discard && offset < firstFull) writeZeroBytes(offset, firstFull - offset);
        boolean physical = h.version < 3 && hasBacking() && !discard; // v2 with a backing file: no zero flag
        if (physical) {
            for (long o = firstFull; o < lastFull; o += cs) writeZeroBytes(o, Math.min(cs, lastFull - o));
        } else {
            exclusive.lockShared();
            try {
                for (long g = firstFull >>> clusterBits; g < ((lastFull + cs - 1) >>> clusterBits); ) g = zeroClusters(g, (lastFull + cs - 1) >>> clusterBits, mayUnmap, discard);
            } catch (MetadataCorruption c) {
                throw corrupted(c);
            } finally {
                exclusive.unlockShared();
            }
            if (metadataWrite == MetadataWrite.WRITETHROUGH) commitMetadata();
        }
        if (!discard && lastFull < end) writeZeroBytes(lastFull, end - lastFull);
        if (overBudget()) flush();
    }

    /** Zeroes guest clusters [g, endG) within one L2 table; returns the next cluster to do. */
    private long zeroClusters(long g, long endG, boolean mayUnmap, boolean discard) throws IOException {
        long stop = Math.min(endG, ((g >>> l2Bits) + 1) << l2Bits);
        while (true) {
            InFlight wait = null;
            NeedLoad need = null;
            meta.lock();
            try {
                checkWritable();
                for (long c = g; c < stop; c++) {
                    if (inflight.containsKey(c)) {
                        wait = inflight.get(c);
                        break;
                    }
                }
                if (wait == null) {
                    int l1i = (int) (g >>> l2Bits);
                    if ((l1[l1i] & OFFSET_MASK) == 0 && (!hasBacking() || h.version < 3)) return stop; // reads as zero already
                    CachedTable t = l2ForWriteLocked(g);
                    for (long c = g; c < stop; c++) {
                        int idx = (int) (c & l2Mask);
                        long cur = t.entry(idx);
                        int type = typeOf(cur);
                        long next;
                        if (h.version >= 3) {
                            if (!mayUnmap && (type == NORMAL || type == ZERO_ALLOC) && (cur & COPIED) != 0)
                                next = (cur & OFFSET_MASK) | ZERO_FLAG | COPIED;
                            else if (discard && !hasBacking()) next = 0;
                            else next = ZERO_FLAG;
                        } else {
                            next = 0;
                        }
                        if (next == cur) continue;
                        t.setEntry(idx, next);
                        mappingChanges++;
                        if ((next & OFFSET_MASK) == 0) queueFreeLocked(cur);
                    }
                    return stop;
                }
            } catch (NeedLoad nl) {
                need = nl;
            } finally {
                meta.unlock();
            }
            if (need != null) load(need.offset, need.kind);
            else wait.await();
        }
    }

    private void writeZeroBytes(long offset, long length) throws IOException {
        for (long o = offset; o < offset + length; ) {
            long n = Math.min(cs - (o & (cs - 1)), offset + length - o);
            write(o, zeroCluster.asSlice(0, n));
            o += n;
        }
    }

    // ------------------------------------------------------------------ flush

    /** One metadata cluster (or part) to write during a flush. */
    private record Item(long offset, MemorySegment bytes, MetadataKind kind, CachedTable table, int gen) {}

    public void flush() throws IOException {
        if (openedReadOnly || closed) return;
        exclusive.lockShared();
        flushLock.lock();
        try {
            flushLocked(true);
        } finally {
            flushLock.unlock();
            exclusive.unlockShared();
        }
    }

    /**
     * {@link MetadataWrite#WRITETHROUGH}: returns once every mapping change made before the call is
     * in the file, after the data and refcounts it depends on were synced. Callers queue on the flush
     * lock; whoever gets it runs a flush for all changes made so far that skips only the last sync
     * (phase B's: the next flush's phase-A sync covers it), and those whose changes that flush
     * covered return without another one (group commit).
     */
    private void commitMetadata() throws IOException {
        long want;
        meta.lock();
        try {
            want = mappingChanges;
        } finally {
            meta.unlock();
        }
        exclusive.lockShared();
        flushLock.lock();
        try {
            if (committedChanges >= want) return;
            flushLocked(false);
            if (committedChanges < want) throw new IOException(filename + ": metadata could not be written (the image is marked corrupt)");
        } finally {
            flushLock.unlock();
            exclusive.unlockShared();
        }
    }

    /**
     * One flush; {@code syncMappings} false skips the sync after phase B (a commit): the L2/L1
     * writes are then in the file but not yet durable, and the frees they allow wait for the next
     * flush (see {@link #unsyncedFrees}).
     */
    private void flushLocked(boolean syncMappings) throws IOException {
        stats.flushes.increment();
        IOException p = poisoned;
        if (p != null) throw new IOException(filename + ": an earlier flush failed (" + p.getMessage() + "); reopen the image", p);
        if (writeRefusal != null && !repairing) {
            // Corrupt: write no metadata at all, only make completed data writes durable.
            if (unsyncedWrites) sync();
            return;
        }
        List<Item> a0 = new ArrayList<>(), a = new ArrayList<>(), b = new ArrayList<>();
        List<long[]> frees;
        // Frees a previous commit left waiting: their L2/L1 writes become durable with this flush's phase-A sync.
        List<long[]> ready = unsyncedFrees;
        unsyncedFrees = new ArrayList<>();
        boolean relocated;
        BitSet rtD, l1D;
        String overlap = null;
        long covered;
        try (Arena arena = Arena.ofConfined()) {
            meta.lock();
            try {
                covered = mappingChanges;
                relocated = rtRelocated;
                rtD = (BitSet) rtDirty.clone();
                l1D = (BitSet) l1Dirty.clone();
                frees = pendingFrees;
                pendingFrees = new ArrayList<>();
                for (CachedTable t : rbCache.values()) {
                    if (!t.dirty()) continue;
                    (t.fresh ? a0 : a).add(snap(arena, t));
                }
                for (CachedTable t : l2Cache.values()) {
                    if (!t.dirty()) continue;
                    (t.fresh ? a : b).add(snap(arena, t));
                }
                if (relocated) {
                    a0.add(new Item(rtOffset, longsToSegment(arena, rt, 0, rt.length), MetadataKind.REFCOUNT_TABLE, null, 0));
                    MemorySegment hb = arena.allocate(12);
                    hb.copyFrom(MemorySegment.ofArray(headerRefcountFields()));
                    a.add(new Item(48, hb, MetadataKind.HEADER, null, 0));
                } else {
                    for (int c = rtD.nextSetBit(0); c >= 0; c = rtD.nextSetBit(c + 1)) {
                        int per = cs / 8;
                        a.add(new Item(rtOffset + (long) c * cs, longsToSegment(arena, rt, c * per, Math.min(per, rt.length - c * per)), MetadataKind.REFCOUNT_TABLE, null, 0));
                    }
                }
                for (int c = l1D.nextSetBit(0); c >= 0; c = l1D.nextSetBit(c + 1)) {
                    int per = cs / 8;
                    b.add(new Item(h.l1TableOffset + (long) c * cs, longsToSegment(arena, l1, c * per, Math.min(per, l1.length - c * per)), MetadataKind.L1, null, 0));
                }
                rtRelocated = false;
                rtDirty.clear();
                l1Dirty.clear();
                for (List<Item> list : List.of(a0, a, b)) {
                    for (Item it : list) {
                        String bad = overlapLocked(it.offset, it.bytes.byteSize(), it.kind);
                        if (bad != null && overlap == null) overlap = bad;
                    }
                }
            } finally {
                meta.unlock();
            }
            if (overlap != null) {
                restore(relocated, rtD, l1D, frees);
                unsyncedFrees.addAll(0, ready);
                throw corrupted(new MetadataCorruption(overlap));
            }
            try {
                if (!a0.isEmpty()) {
                    writeAll(a0);
                    sync();
                }
                if (!a.isEmpty() || !b.isEmpty() || unsyncedWrites) {
                    writeAll(a);
                    sync();
                }
                if (!b.isEmpty()) {
                    writeAll(b);
                    if (syncMappings) sync();
                    else unsyncedWrites = true; // the next flush's phase A syncs these writes
                }
            } catch (IOException ex) {
                restore(relocated, rtD, l1D, frees);
                unsyncedFrees.addAll(0, ready);
                throw ex;
            }
            meta.lock();
            try {
                for (List<Item> list : List.of(a0, a, b)) {
                    for (Item it : list) {
                        if (it.table == null) continue;
                        it.table.fresh = false;
                        it.table.cleanGen = it.gen;
                    }
                }
                if (relocated) {
                    h.refcountTableOffset = rtOffset;
                    h.refcountTableClusters = rtClusters;
                }
                evictLocked();
            } finally {
                meta.unlock();
            }
            committedChanges = Math.max(committedChanges, covered);
        }
        if (!syncMappings && !b.isEmpty()) {
            unsyncedFrees.addAll(frees);
            frees = ready;
        } else {
            frees.addAll(0, ready);
        }
        if (!frees.isEmpty()) applyFrees(frees);
    }

    private void restore(boolean relocated, BitSet rtD, BitSet l1D, List<long[]> frees) {
        meta.lock();
        try {
            rtRelocated |= relocated;
            rtDirty.or(rtD);
            l1Dirty.or(l1D);
            pendingFrees.addAll(0, frees);
        } finally {
            meta.unlock();
        }
    }

    private byte[] headerRefcountFields() {
        ByteBuffer bb = ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN);
        bb.putLong(rtOffset).putInt(rtClusters);
        return bb.array();
    }

    private Item snap(Arena arena, CachedTable t) {
        MemorySegment s = arena.allocate(cs, 4096);
        t.serialize(s);
        return new Item(t.offset, s, t.kind == CachedTable.Kind.L2 ? MetadataKind.L2 : MetadataKind.REFCOUNT_BLOCK, t, t.dirtyGen);
    }

    private static MemorySegment longsToSegment(Arena arena, long[] src, int from, int n) {
        MemorySegment s = arena.allocate(Math.max(8L * n, 8), 4096).asSlice(0, 8L * n);
        for (int i = 0; i < n; i++) s.set(CachedTable.BE_LONG, 8L * i, (long) LONGS.getAcquire(src, from + i));
        return s;
    }

    /** Null if a guest data write to the clusters of [host, host+len) hits no live metadata, else why not. */
    private String dataOverlap(long host, long len) {
        meta.lock();
        try {
            for (long c = host & ~(long) (cs - 1); c < host + len; c += cs) {
                MetadataKind k = metaKinds.get(c);
                if (k != null) return "guest data write at host offset " + c + " would overwrite the " + k.label;
            }
            return null;
        } finally {
            meta.unlock();
        }
    }

    /** Under meta: null if writing {@code kind} at [off, off+len) hits no other live metadata, else why not. */
    String overlapLocked(long off, long len, MetadataKind kind) {
        for (long c = off & ~(long) (cs - 1); c < off + len; c += cs) {
            MetadataKind k = metaKinds.get(c);
            if (k != kind)
                return "metadata overlap: writing the " + kind.label + " at " + off + " would overwrite "
                        + (k == null ? "a cluster not known as " + kind.label : "the " + k.label) + " at " + c;
        }
        return null;
    }

    private void writeAll(List<Item> items) throws IOException {
        for (Item it : items) file.write(it.offset, it.bytes);
    }

    private void sync() throws IOException {
        unsyncedWrites = false;
        stats.datasyncs.increment();
        try {
            file.datasync();
        } catch (IOException e) {
            poisoned = e;
            throw e;
        }
    }

    private void applyFrees(List<long[]> frees) throws IOException {
        epochs.synchronize();
        int i = 0;
        long j = 0;
        while (i < frees.size()) {
            NeedLoad need = null;
            meta.lock();
            try {
                for (; i < frees.size(); i++, j = 0) {
                    long first = frees.get(i)[0] >>> clusterBits;
                    long count = frees.get(i)[1];
                    for (; j < count; j++) decrementLocked(first + j);
                }
            } catch (NeedLoad nl) {
                need = nl;
            } finally {
                meta.unlock();
            }
            if (need != null) load(need.offset, need.kind);
        }
    }

    // ------------------------------------------------------------------ corruption

    /** Sets the corrupt bit (version 3; best effort), refuses further writes, and returns the exception to throw. */
    Qcow2Exception corrupted(MetadataCorruption c) {
        if (!openedReadOnly && writeRefusal == null) {
            writeRefusal = filename + ": image is marked corrupt (" + c.getMessage() + ")";
            if (h.version >= 3) {
                meta.lock();
                try {
                    h.incompatible |= Qcow2Header.INCOMPAT_CORRUPT;
                } finally {
                    meta.unlock();
                }
                try {
                    writeFeatureBits();
                } catch (IOException ignored) {
                    // the write refusal above still protects the image in this process
                }
            }
        }
        return new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": corrupt image: " + c.getMessage(), c);
    }

    void writeFeatureBits() throws IOException {
        if (h.version < 3) return;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(24, 512);
            s.copyFrom(MemorySegment.ofArray(h.featureBytes()));
            file.write(72, s);
            file.datasync();
        }
    }

    // ------------------------------------------------------------------ map / info

    public List<MapEntry> map(long offset, long length) throws IOException {
        checkRange(offset, length);
        List<MapEntry> out = new ArrayList<>();
        exclusive.lockShared();
        try {
            long pos = offset, end = offset + length;
            while (pos < end) {
                long g = pos >>> clusterBits;
                long n = Math.min(((g + 1) << clusterBits) - pos, end - pos);
                long e = lookup(g);
                switch (typeOf(e)) {
                    case NORMAL -> add(out, new MapEntry(pos, n, 0, true, false, true, (e & OFFSET_MASK) + (pos & (cs - 1))));
                    case COMPRESSED_CLUSTER -> add(out, new MapEntry(pos, n, 0, true, false, true, -1));
                    case ZERO_ALLOC -> add(out, new MapEntry(pos, n, 0, true, true, false, (e & OFFSET_MASK) + (pos & (cs - 1))));
                    case ZERO_PLAIN -> add(out, new MapEntry(pos, n, 0, true, true, false, -1));
                    default -> {
                        if (!hasBacking()) add(out, new MapEntry(pos, n, 0, false, true, false, -1));
                        else {
                            long inB = pos < backingSize ? Math.min(n, backingSize - pos) : 0;
                            if (inB > 0) {
                                if (backingImage != null) {
                                    for (MapEntry m : backingImage.map(pos, inB))
                                        add(out, new MapEntry(m.start(), m.length(), m.depth() + 1, m.present(), m.zero(), m.data(), m.offset()));
                                } else add(out, new MapEntry(pos, inB, 1, true, false, true, pos));
                            }
                            if (inB < n) add(out, new MapEntry(pos + inB, n - inB, 1, false, true, false, -1));
                        }
                    }
                }
                pos += n;
            }
        } finally {
            exclusive.unlockShared();
        }
        return out;
    }

    private static void add(List<MapEntry> out, MapEntry m) {
        if (!out.isEmpty()) {
            MapEntry p = out.getLast();
            if (p.start() + p.length() == m.start() && p.depth() == m.depth() && p.present() == m.present()
                    && p.zero() == m.zero() && p.data() == m.data()
                    && ((p.offset() < 0 && m.offset() < 0) || (p.offset() >= 0 && m.offset() == p.offset() + p.length()))) {
                out.set(out.size() - 1, new MapEntry(p.start(), p.length() + m.length(), p.depth(), p.present(), p.zero(), p.data(), p.offset()));
                return;
            }
        }
        out.add(m);
    }

    public ImageInfo info() throws IOException {
        return new ImageInfo(vsize, filename, cs, "qcow2", file.size(),
                (h.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0, h.version >= 3 ? "1.1" : "0.10",
                (h.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0, h.refcountBits(), corruptBit(), false, "zlib",
                h.backingFile, h.backingFormat);
    }

    public CheckReport check(RepairMode mode) throws IOException {
        if (closed) throw new IOException(filename + ": image is closed");
        if (mode != RepairMode.NONE && openedReadOnly) throw new IOException(filename + ": cannot repair an image opened read-only");
        return ImageCheck.run(this, mode);
    }

    /** Called by check after a successful repair of a corrupt image: writes become possible again. */
    void clearCorrupt() throws IOException {
        if (!corruptBit() && writeRefusal == null) return;
        h.incompatible &= ~Qcow2Header.INCOMPAT_CORRUPT;
        writeFeatureBits();
        if (h.nbSnapshots == 0) writeRefusal = null;
    }

    // ------------------------------------------------------------------ internals for check and preallocation

    /** Flushes twice so that also refcount decrements applied after the first flush are on disk. */
    void flushFully() throws IOException {
        if (openedReadOnly) return;
        flush();
        flush();
    }

    /** Runs {@code op} under meta, loading whatever metadata it reports missing and retrying. */
    <T> T withMeta(MetaOp<T> op) throws IOException {
        while (true) {
            NeedLoad need;
            meta.lock();
            try {
                return op.run();
            } catch (NeedLoad nl) {
                need = nl;
            } finally {
                meta.unlock();
            }
            load(need.offset, need.kind);
        }
    }

    interface MetaOp<T> {
        T run() throws IOException;
    }

    /** Under meta: sets a refcount, creating a refcount block if none covers the cluster. */
    void setRefcountLocked(long clusterIndex, long value) throws IOException {
        long bi = clusterIndex >>> rbBits;
        while (bi >= rt.length) growRefcountTableLocked();
        if ((rt[(int) bi] & RT_MASK) == 0) {
            long saved = freeHint;
            freeHint = Math.max(freeHint, fileClustersLocked());
            long off = allocClusterLocked(MetadataKind.REFCOUNT_BLOCK);
            freeHint = saved;
            if ((rt[(int) bi] & RT_MASK) != 0) {
                // the allocator itself placed a block for this range (self-describing): use that one
                refblockLocked(off >>> clusterBits).setRefcount((int) ((off >>> clusterBits) & rbMask), rOrder, 0);
                metaKinds.remove(off);
                CachedTable b = refblockLocked(clusterIndex);
                b.setRefcount((int) (clusterIndex & rbMask), rOrder, value);
                return;
            }
            CachedTable b = CachedTable.refblock(off, null, cs);
            b.fresh = true;
            rbCache.put(off, b);
            cachedBytes += cs;
            rt[(int) bi] = off;
            rtDirty.set((int) (bi * 8 / cs));
            if ((off >>> clusterBits >>> rbBits) == bi) b.setRefcount((int) ((off >>> clusterBits) & rbMask), rOrder, 1);
        }
        CachedTable b = refblockLocked(clusterIndex);
        b.setRefcount((int) (clusterIndex & rbMask), rOrder, value);
        if (value == 0) freeHint = Math.min(freeHint, clusterIndex);
    }

    long fileClustersLocked() {
        try {
            return (file.size() + cs - 1) >>> clusterBits;
        } catch (IOException e) {
            return freeHint;
        }
    }

    long maxRefcount() {
        return rOrder == 6 ? Long.MAX_VALUE : (1L << (1 << rOrder)) - 1;
    }

    /** Under meta: marks the L2 table dirty after check changed an entry in place. */
    void setL2EntryLocked(CachedTable t, int idx, long v) {
        t.setEntry(idx, v);
    }

    void setL1EntryLocked(int i, long v) {
        LONGS.setRelease(l1, i, v);
        l1Dirty.set((int) ((long) i * 8 / cs));
    }

    /** Maps every guest cluster to a host cluster (preallocation=metadata|falloc|full). */
    void preallocate(Preallocation mode) throws IOException {
        long clusters = (vsize + cs - 1) >>> clusterBits;
        long maxEnd = 0;
        for (long g = 0; g < clusters; g++) {
            final long gg = g;
            long host = withMeta(() -> {
                CachedTable t = l2ForWriteLocked(gg);
                int idx = (int) (gg & l2Mask);
                long cur = t.entry(idx);
                if (typeOf(cur) == NORMAL) return cur & OFFSET_MASK;
                long c = allocClusterLocked(null);
                t.setEntry(idx, c | COPIED);
                return c;
            });
            if (mode == Preallocation.FULL) file.write(host, zeroCluster);
            maxEnd = Math.max(maxEnd, host + cs);
            if (overBudget()) flush();
        }
        if (mode == Preallocation.FALLOC) {
            // data clusters follow the metadata mostly contiguously: reserve everything up to the end
            long start = 3L * cs;
            if (maxEnd > start) file.allocate(start, maxEnd - start);
        }
        if (file.size() < maxEnd) file.truncate(maxEnd);
        unsyncedWrites = true;
        flushFully();
    }

    // ------------------------------------------------------------------ close

    @Override
    public void close() throws IOException {
        if (closed) return;
        exclusive.lockExclusive();
        try {
            if (closed) return;
            IOException first = null;
            try {
                if (!openedReadOnly && poisoned == null) flushFully();
            } catch (IOException e) {
                first = e;
            }
            closed = true;
            try {
                closeBacking();
            } catch (IOException e) {
                if (first == null) first = e;
            }
            if (ownsFile) {
                try {
                    file.close();
                } catch (IOException e) {
                    if (first == null) first = e;
                }
            }
            if (first != null) throw first;
        } finally {
            exclusive.unlockExclusive();
        }
    }

    private void closeBacking() throws IOException {
        if (backingImage != null) backingImage.close();
        if (backingRaw != null) backingRaw.close();
    }

    // ------------------------------------------------------------------ create

    public static void create(Path path, CreateOptions options) throws IOException {
        try {
            options.validate();
        } catch (IllegalArgumentException e) {
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, e.getMessage());
        }
        if (Files.exists(path)) throw new FileAlreadyExistsException(path.toString());
        IoBackend f = PosixFileBackend.open(path, false, true);
        boolean ok = false;
        try {
            create(f, options);
            ok = true;
        } finally {
            f.close();
            if (!ok) Files.deleteIfExists(path);
        }
    }

    public static void create(IoBackend file, CreateOptions o) throws IOException {
        try {
            o.validate();
        } catch (IllegalArgumentException e) {
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, e.getMessage());
        }
        if (file.size() != 0) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, file + ": create needs an empty file");
        ImageLayout.writeNew(file, o);
        if (o.preallocation() != Preallocation.OFF) {
            try (Qcow2Image img = open(file, OpenOptions.defaults())) {
                img.preallocate(o.preallocation());
            }
        }
    }
}
