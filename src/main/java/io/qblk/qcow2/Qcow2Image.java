package io.qblk.qcow2;

import io.qblk.io.DirectIoBackend;
import io.qblk.uring.FileBackends;
import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A qcow2 image (version 2 or 3) opened for reading and writing, safe for many concurrent
 * (virtual) threads: the facade over the engine's parts (docs/architecture.md, "The qcow2 engine's
 * classes"; docs/qcow2-engine.md; docs/ordering.md).
 *
 * <p>Opening parses the header, the L1 and refcount tables, the snapshot table and the backing
 * chain, and builds the overlap map; then every request goes to the part that owns it:
 * {@link ClusterReader} (reads), {@link ClusterWriter} (writes, zeroes, discard, preallocation),
 * {@link WriteBack} (flush and write-through commit), {@link ImageCheck} (check and repair).
 *
 * <p>Locks: the metadata lock ({@link MetadataCache}) guards every in-memory metadata structure and
 * is never held across I/O; {@link WriteBack}'s flush lock serializes flushes and is held across
 * their I/O; {@code exclusive} is taken shared by every data operation and flush, and exclusively
 * by check and close only.
 */
public final class Qcow2Image implements Closeable {
    private final IoBackend file;
    private final boolean ownsFile;
    private final String filename;
    private final Qcow2Header h;
    private final Geometry geo;
    private final SnapshotOps snapshots;
    private final BackingChain backing;
    private final EngineStats stats = new EngineStats();
    private final SharedExclusiveLock exclusive = new SharedExclusiveLock();
    private final MetadataCache cache;
    private final OverlapCheck overlap;
    private final RefcountAllocator alloc;
    private final ClusterMap map;
    private final WriteGuard guard;
    private final WriteBack writeBack;
    private final ClusterReader reader;
    private final ClusterWriter writer;
    private final IoEpochs epochs;
    private final BufferPool clusterPool;
    private final Bitmaps bitmaps;
    /** Why guest data cannot be read or written (see {@link Qcow2Header#ioRefusal}), or null. */
    private final String ioRefusal;
    /** How the image is encrypted (described only), or null. */
    private final EncryptionHeader encryption;

    // ------------------------------------------------------------------ open

    public static Qcow2Image open(Path path, OpenOptions options) throws IOException {
        return openInChain(path, options, 0);
    }

    /** Opens an image by path as element {@code depth} of a backing chain (0 = the image on top). */
    static Qcow2Image openInChain(Path path, OpenOptions options, int depth) throws IOException {
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
        byte[] probe = FileReads.bytes(file, 0, (int) Math.min(Qcow2Header.PROBE_BYTES, Math.max(fsize, 0)));
        if (probe.length < Qcow2Header.PROBE_BYTES) probe = Arrays.copyOf(probe, Qcow2Header.PROBE_BYTES);
        int bits = Qcow2Header.clusterBitsOf(probe, fsize);
        this.h = Qcow2Header.parse(FileReads.bytes(file, 0, 1 << bits), fsize);
        // A feature whose guest data the engine cannot reach: the image opens read-only, to be
        // described (info) and, without encryption, checked and mapped (metadata only); every data
        // path refuses. An encrypted image needs its key for anything but info, as in qemu.
        this.ioRefusal = h.ioRefusal();
        if (h.cryptMethod != 0 && !(o.readOnly() && o.backingPolicy() == BackingPolicy.NOT_OPENED))
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, Qcow2Header.keyRequired(filename));
        if (ioRefusal != null && !o.readOnly()) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, ioRefusal);
        this.encryption = EncryptionHeader.read(file, h);
        this.geo = Geometry.of(h);
        int cs = geo.clusterSize;
        if (cs < DirectIoBackend.ALIGNMENT) {
            // A page could hold a metadata cluster and a data cluster: keep every request buffered, so
            // a direct write never races a buffered one within a page (docs/qcow2-engine.md, "Cache modes").
            file.disableDirect("cluster size " + cs + " is below the " + DirectIoBackend.ALIGNMENT + "-byte direct I/O alignment");
        }
        long cacheBudget = Math.max(o.cacheBytes(), 8L * cs);
        BufferPool clusterPool = new BufferPool(cs, 64);
        this.cache = new MetadataCache(file, cs, geo.l2Stride(), cacheBudget, stats, clusterPool);
        this.overlap = new OverlapCheck(cache, geo);

        long[] l1 = FileReads.longs(file, h.l1TableOffset, h.l1Size);
        for (int i = 0; i < l1.length; i++) {
            long off = l1[i] & L2Entry.OFFSET_MASK;
            if (!geo.aligned(off))
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt image: L1 entry " + i + " (L2 table offset " + off + ") is not cluster aligned");
        }
        long[] rt = FileReads.longs(file, h.refcountTableOffset, (int) ((long) h.refcountTableClusters * cs / 8));
        for (int i = 0; i < rt.length; i++) {
            long off = rt[i] & Geometry.REFTABLE_OFFSET_MASK;
            if (!geo.aligned(off) || off < 0 || off >= Qcow2Header.MAX_HOST_OFFSET)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt image: refcount table entry " + i + " (" + off + ") is not a valid cluster offset");
        }
        SnapshotTable snapshotTable = SnapshotTable.read(file, h);

        markMetadata(l1, rt, h.refcountTableOffset, h.refcountTableClusters, snapshotTable);
        this.bitmaps = Bitmaps.load(file, filename, h, geo, overlap, o.readOnly()); // after the others: an overlap is an error

        this.alloc = new RefcountAllocator(file, filename, geo, cache, overlap, stats, rt, h.refcountTableOffset, h.refcountTableClusters);
        this.map = new ClusterMap(geo, cache, alloc, l1, h.l1TableOffset);
        this.guard = new WriteGuard(filename, h, file, cache, o.readOnly());
        this.backing = BackingChain.open(h, dir, o, depth, cacheBudget);
        IoEpochs epochs = new IoEpochs();
        this.writeBack = new WriteBack(file, filename, h, geo, cache, alloc, map, overlap, guard, epochs, exclusive, stats, o.metadataWrite(), o.discard());
        this.reader = new ClusterReader(file, filename, geo, map, backing, epochs, clusterPool, h.compression);
        this.writer = new ClusterWriter(file, geo, cache, map, alloc, overlap, guard, writeBack, reader, backing, epochs, exclusive, clusterPool);
        this.snapshots = new SnapshotOps(file, filename, h, geo, cache, alloc, map, overlap, writeBack, guard, exclusive, snapshotTable);
        this.epochs = epochs;
        this.clusterPool = clusterPool;

        try {
            if (!o.readOnly()) prepareForWriting(o.metadataWrite());
        } catch (Throwable t) {
            backing.close();
            throw t;
        }
    }

    /**
     * The metadata map for the overlap check, from the layout (at open, and again after check
     * rebuilt the refcount structure): first come wins, later conflicts surface as overlaps.
     */
    private void markMetadata(long[] l1, long[] rt, long rtOffset, int rtClusters, SnapshotTable snapshots) {
        overlap.markIfAbsent(0L, MetadataKind.HEADER);
        overlap.markRange(h.l1TableOffset, (long) h.l1Size * 8, MetadataKind.L1);
        overlap.markRange(rtOffset, (long) rtClusters * geo.clusterSize, MetadataKind.REFCOUNT_TABLE);
        if (h.nbSnapshots > 0) overlap.markRange(h.snapshotsOffset, snapshots.bytes(), MetadataKind.SNAPSHOT_TABLE);
        for (SnapshotTable.SnapshotL1 s : snapshots.l1s()) overlap.markRange(s.offset(), s.entries() * 8, MetadataKind.SNAPSHOT_L1);
        // bitmap clusters: Bitmaps.load claims them (an overlap with the above is an error)
        for (long e : rt) if ((e & Geometry.REFTABLE_OFFSET_MASK) != 0) overlap.markIfAbsent(e & Geometry.REFTABLE_OFFSET_MASK, MetadataKind.REFCOUNT_BLOCK);
        for (long e : l1) if ((e & L2Entry.OFFSET_MASK) != 0) overlap.markIfAbsent(e & L2Entry.OFFSET_MASK, MetadataKind.L2);
    }

    private void prepareForWriting(MetadataWrite metadataWrite) throws IOException {
        if ((h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0) {
            guard.refuse(filename + ": image is marked corrupt; only check with repair may modify it");
            return;
        }
        // Bitmaps that loaded are maintained (autoclear bit 0 kept, enabled ones marked in use before
        // the first change); other autoclear bits are cleared then. An open that only reads writes nothing.
        // Lazy refcounts (rules L1-L3) only where a commit can skip refcount blocks: write-through metadata.
        guard.prepareFirstChange(bitmaps.keptAutoclear(), bitmaps, metadataWrite == MetadataWrite.WRITETHROUGH);
        if ((h.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0) {
            guard.beforeChange();
            CheckReport r = ImageCheck.run(checkSubject(), RepairMode.ALL);
            if (r.corruptions() > 0)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": dirty image could not be repaired (" + r.corruptions() + " corruptions remain)");
            guard.clearDirty(true);
        }
    }

    // ------------------------------------------------------------------ properties

    public long virtualSize() { return geo.virtualSize; }

    /** Live counters of this image's metadata work (cache, allocations, flushes). */
    public EngineStats stats() { return stats; }

    public int clusterSize() { return geo.clusterSize; }

    /**
     * Host clusters of this file in use (refcount not zero), counted up to {@code limit}: what
     * qemu's guess whether an image "looks metadata-preallocated" compares with the file's
     * allocated blocks (see {@code SourceImage}).
     */
    public long usedClusters(long limit) throws IOException {
        exclusive.lockShared();
        try {
            return cache.withMeta(() -> alloc.countUsedLocked(limit));
        } finally {
            exclusive.unlockShared();
        }
    }

    /** Virtual size of the opened backing file (0 without one). */
    public long backingSize() { return backing.present() ? backing.size() : 0; }

    /**
     * Null when the image file uses O_DIRECT for aligned requests or cache mode NONE was not asked
     * for; otherwise why every request goes through the page cache.
     */
    public String directDisabledReason() {
        return file.directDisabledReason();
    }

    public boolean readOnly() { return guard.readOnly(); }

    /** Why an image opened for writing refuses writes (corrupt bit, corruption found), or null. */
    public String writeRefusal() { return guard.writeRefusal(); }

    /** The image file's backend (tests look at its direct/buffered counters). */
    IoBackend file() { return file; }

    private void checkRange(long offset, long length) throws IOException {
        refuseIo();
        checkBounds(offset, length);
    }

    private void checkBounds(long offset, long length) throws IOException {
        checkOpen();
        checkBounds(offset, length, geo.virtualSize, "the virtual size");
    }

    private void checkOpen() throws IOException {
        if (guard.closed()) throw new IOException(filename + ": image is closed");
    }

    /** A guest range inside {@code size} bytes ({@code what}: the disk it belongs to, for the message). */
    private void checkBounds(long offset, long length, long size, String what) throws IOException {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
            throw new IOException(filename + ": range " + offset + "+" + length + " is outside " + what + " " + size);
    }

    // ------------------------------------------------------------------ data

    public void read(long offset, MemorySegment dst) throws IOException {
        checkRange(offset, dst.byteSize());
        exclusive.lockShared();
        try {
            reader.read(offset, dst);
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        } finally {
            exclusive.unlockShared();
        }
    }

    /**
     * Fills {@code plan} when reading {@code dst} at guest {@code offset} is one plain read of the image
     * file that the caller may submit itself ({@link io.qblk.io.FilePlan}); the image's shared lock
     * and the lookup's I/O epoch stay held until {@code plan.release()}. False (nothing held) when the
     * request needs {@link #read}: not one contiguous run of allocated clusters, extended L2, an
     * exclusive locker waiting, a lookup that failed (read reports it), anything unusual.
     */
    public boolean planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan) {
        return plan(offset, dst.byteSize(), lock -> reader.planRead(offset, dst, plan, planHolder, lock));
    }

    /** What {@link #planRead} and {@link #planWrite} hand the reader or writer: returns its token, or -1. */
    private interface Planner {
        long plan(int lockStripe) throws IOException;
    }

    /** The part of {@link #planRead} and {@link #planWrite} around the lookup: range, shared lock, failures. */
    private boolean plan(long offset, long len, Planner planner) {
        if (ioRefusal != null || len <= 0 || offset < 0 || offset > geo.virtualSize - len || guard.closed()) return false;
        int lock = exclusive.tryLockShared();
        if (lock < 0) return false;
        boolean planned = false;
        try {
            planned = planner.plan(lock) >= 0;
            return planned;
        } catch (IOException | RuntimeException e) {
            return false; // read() or write() takes the same path again and reports it
        } finally {
            if (!planned) exclusive.unlockShared(lock);
        }
    }

    /** Ends a planned read's holds: its epoch section, then the shared lock (token: lock stripe << 16 | epoch part). */
    private void releasePlan(long token) {
        reader.releasePlan(token);
        exclusive.unlockShared((int) (token >>> 16));
    }

    private final io.qblk.io.FilePlan.Holder planHolder = this::releasePlan;

    /**
     * Fills {@code plan} when writing {@code src} at guest {@code offset} is one plain write of the
     * image file into allocated clusters that need no metadata change and no wait
     * ({@link io.qblk.io.FilePlan}, docs/ordering.md W2); the image's shared lock, the lookup's I/O
     * epoch and the write's place among the planned writes in flight stay held until
     * {@code plan.release()}. False (nothing held) when the request needs {@link #write}: not one
     * contiguous run of allocated COPIED clusters, extended L2, a mapping change not yet committed
     * (write-through), an exclusive locker waiting, a read-only or failed image, anything unusual.
     */
    public boolean planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan) {
        return plan(offset, src.byteSize(), lock -> {
            bitmaps.markDirty(offset, src.byteSize()); // B rules: the bits before the write runs
            return writer.planWrite(offset, src, plan, writePlanHolder, lock);
        });
    }

    /** Ends a planned write's holds: counted done (W2), its epoch section, then the shared lock. */
    private void releaseWritePlan(long token) {
        writer.releasePlan(token);
        exclusive.unlockShared((int) (token >>> 16));
    }

    private final io.qblk.io.FilePlan.Holder writePlanHolder = this::releaseWritePlan;

    public void write(long offset, MemorySegment src) throws IOException {
        checkRange(offset, src.byteSize());
        bitmaps.markDirty(offset, src.byteSize());
        writer.write(offset, src);
    }

    /**
     * Writes one whole guest cluster at cluster-aligned {@code offset} compressed with the image's
     * compression type, as {@code qemu-img convert -c} does: the cluster must be unallocated (or a
     * zero cluster without host cluster). {@code src} holds the cluster's bytes (less at the end of
     * the image: the rest reads as zeroes). When compressing does not save a sector the cluster is
     * written uncompressed. Returns whether it was stored compressed.
     */
    public boolean writeCompressed(long offset, MemorySegment src) throws IOException {
        int cs = geo.clusterSize;
        checkRange(offset, src.byteSize());
        if ((offset & (cs - 1)) != 0 || src.byteSize() > cs || (src.byteSize() < cs && offset + src.byteSize() != geo.virtualSize))
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, filename + ": a compressed write covers one whole cluster (" + offset + "+" + src.byteSize() + ")");
        byte[] plain = new byte[cs];
        MemorySegment.copy(src, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, plain, 0, (int) src.byteSize());
        byte[] packed = new byte[cs];
        int len = h.compression.compress(plain, packed);
        if (len < 0) {
            write(offset, src);
            return false;
        }
        writer.writeCompressed(offset >>> geo.clusterBits, packed, len);
        return true;
    }

    /** The codec of this image's compressed clusters. */
    public CompressionType compressionType() { return h.compression; }

    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        checkRange(offset, length);
        bitmaps.markDirty(offset, length);
        writer.zeroRange(offset, length, mayUnmap, false);
    }

    public void discard(long offset, long length) throws IOException {
        checkRange(offset, length);
        bitmaps.markDirty(offset, length);
        writer.zeroRange(offset, length, true, true);
    }

    public void flush() throws IOException {
        writeBack.flush();
    }

    // ------------------------------------------------------------------ internal snapshots (SnapshotOps)

    /** The internal snapshots, in table order. */
    public List<SnapshotInfo> snapshots() {
        return snapshots.list();
    }

    /** Creates an internal snapshot of the active image named {@code name} (qemu-img snapshot -c). */
    public SnapshotInfo createSnapshot(String name) throws IOException {
        return snapshots.create(name);
    }

    /**
     * Reverts the active image to the snapshot with ID or name {@code key} (qemu-img snapshot -a). A
     * snapshot of another virtual size resizes the image to it; the image then refuses writes until
     * reopened. Refused, as by qemu-img, when the image has persistent bitmaps (enabled or not).
     */
    public void applySnapshot(String key) throws IOException {
        if (!bitmaps.info().isEmpty()) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "Device has active dirty bitmaps");
        snapshots.apply(key);
    }

    /** The virtual size of the snapshot with ID or name {@code key} (the image's when the entry does not record one). */
    public long snapshotSize(String key) throws IOException {
        return snapshots.sizeOf(key);
    }

    /** Deletes the first snapshot named {@code name} (qemu-img snapshot -d, which matches names, not IDs). */
    public void deleteSnapshot(String name) throws IOException {
        snapshots.delete(name);
    }

    /**
     * Reads guest bytes of the snapshot with ID or name {@code key} (what the image held when it was
     * taken), inside the snapshot's own virtual size (which may differ from the image's).
     */
    public void readSnapshot(String key, long offset, MemorySegment dst) throws IOException {
        refuseIo();
        checkOpen();
        long size = snapshotSize(key);
        checkBounds(offset, dst.byteSize(), size, "snapshot '" + key + "''s virtual size");
        long[] l1 = snapshots.l1Of(key);
        Geometry sgeo = geo.withVirtualSize(size);
        ClusterMap smap = new ClusterMap(sgeo, cache, alloc, l1, 0);
        exclusive.lockShared();
        try {
            new ClusterReader(file, filename, sgeo, smap, backing, epochs, clusterPool, h.compression).read(offset, dst);
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        } finally {
            exclusive.unlockShared();
        }
    }

    /**
     * Makes whole clusters of the range unallocated (qemu's full discard): they read from the backing
     * file, or as zeroes without one. Partial clusters at the ends are left alone.
     */
    public void deallocate(long offset, long length) throws IOException {
        checkRange(offset, length);
        writer.zeroRange(offset, length, true, true, true);
    }

    /**
     * Changes the virtual size to {@code newSize} (a multiple of 512) as docs/ordering.md R8-R10 say;
     * shrinking unmaps every cluster past the new end and cuts the file after its last cluster in use
     * (R14). Internal snapshots keep their own size and clusters (qemu allows both directions too).
     * Everything written before is flushed first. Afterwards the image refuses writes: reopen it to
     * use the new size.
     */
    public void resize(long newSize) throws IOException {
        guard.checkWritable();
        if (newSize < 0 || newSize % 512 != 0) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, filename + ": size " + newSize + " is not a multiple of 512");
        if (newSize > Qcow2Header.MAX_VIRTUAL_SIZE) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": size " + newSize + " is too large");
        guard.beforeChange();
        writeBack.flushFully();
        ImageResize r = new ImageResize(file, filename, h, geo, cache, alloc, map, writeBack);
        if (newSize < geo.virtualSize) r.shrink(this, newSize, exclusive);
        else if (newSize > geo.virtualSize) r.grow(newSize);
        if (newSize != geo.virtualSize) guard.refuse(filename + ": image was resized; reopen it");
    }

    /**
     * Refuses, with qemu-img's message, a refcount width of {@code bits} that is not a power of two
     * up to 64 or that some refcount of the image does not fit in (naming the first such cluster);
     * reads only. (Whether the image's version allows the width: {@link #checkRefcountWidth(long, int)}.)
     */
    public void checkRefcountsFit(int bits) throws IOException {
        RefcountWidth w = refcountWidth(bits);
        if (bits == (1 << geo.refcountOrder)) return;
        exclusive.lockShared();
        try {
            w.plan(Integer.numberOfTrailingZeros(bits));
        } finally {
            exclusive.unlockShared();
        }
    }

    /**
     * {@code qemu-img amend -o refcount_bits=N}: rewrites the refcount structure with refcounts of
     * {@code bits} bits (docs/ordering.md R15): refused before anything is written when a refcount
     * does not fit. It changes no guest data, L1/L2 table or bitmap, so it does not mark bitmaps in
     * use; it must be the only change of its open (refused when this open wrote the image before).
     * Afterwards the image refuses writes: reopen it.
     */
    public void changeRefcountWidth(int bits) throws IOException {
        guard.checkWritable();
        checkRefcountWidth(bits, h.version);
        if (bits == (1 << geo.refcountOrder)) return;
        if (bitmaps.inUseNow() || guard.lazyActive()) // its close would write with the old geometry
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, filename + ": this open wrote the image; change the refcount width on a fresh open");
        exclusive.lockExclusive();
        try {
            writeBack.flushFully();
            RefcountWidth w = refcountWidth(bits);
            RefcountWidth.Plan p = w.plan(Integer.numberOfTrailingZeros(bits));
            try {
                w.write(p);
            } finally {
                guard.refuse(filename + ": its refcount width was changed; reopen it");
            }
        } finally {
            exclusive.unlockExclusive();
        }
    }

    /**
     * Refuses, with qemu-img's messages, a refcount width that is not a power of two from 1 to 64,
     * or other than 16 on a version 2 image (compat 0.10).
     */
    public static void checkRefcountWidth(long bits, int version) throws Qcow2Exception {
        if (bits < 1 || bits > 64 || Long.bitCount(bits) != 1)
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Refcount width must be a power of two and may not exceed 64 bits");
        if (version < 3 && bits != 16)
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
    }

    /** The width change to {@code bits} (a power of two up to 64) over the current refcount structure. */
    private RefcountWidth refcountWidth(int bits) throws IOException {
        checkRefcountWidth(bits, 3);
        return new RefcountWidth(file, filename, geo, cache, alloc.table().copy(), alloc.tableOffset(), alloc.tableClusters());
    }

    // ------------------------------------------------------------------ map / info / check

    public List<MapEntry> map(long offset, long length) throws IOException {
        checkBounds(offset, length); // metadata only: works on images whose data the engine cannot reach
        List<MapEntry> out = new ArrayList<>();
        int cs = geo.clusterSize;
        exclusive.lockShared();
        try {
            long pos = offset, end = offset + length;
            while (pos < end) {
                long g = geo.clusterOf(pos);
                long n = Math.min(((g + 1) << geo.clusterBits) - pos, end - pos);
                if (geo.extendedL2) {
                    mapSubclusters(out, g, pos, n);
                    pos += n;
                    continue;
                }
                long e = map.lookup(g);
                long host = (e & L2Entry.OFFSET_MASK) + (pos & (cs - 1));
                switch (geo.typeOf(e)) {
                    case L2Entry.NORMAL -> add(out, new MapEntry(pos, n, 0, true, false, true, host));
                    case L2Entry.COMPRESSED_CLUSTER -> add(out, new MapEntry(pos, n, 0, true, false, true, -1));
                    case L2Entry.ZERO_ALLOC -> add(out, new MapEntry(pos, n, 0, true, true, false, host));
                    case L2Entry.ZERO_PLAIN -> add(out, new MapEntry(pos, n, 0, true, true, false, -1));
                    default -> {
                        for (MapEntry m : backing.map(pos, n)) add(out, m);
                    }
                }
                pos += n;
            }
        } finally {
            exclusive.unlockShared();
        }
        return out;
    }

    /**
     * Extended L2: the extents of [pos, pos+n) within guest cluster g, subcluster run by subcluster
     * run, as qemu reports them: zero subclusters of an allocated cluster keep their host offset; an
     * unallocated subcluster of an allocated cluster reads from the backing file, or (none) as zero
     * with its host offset.
     */
    private void mapSubclusters(List<MapEntry> out, long g, long pos, long n) throws IOException {
        L2Entry.Pair p = map.lookupPair(g);
        long e = p.entry(), bm = p.bitmap();
        try {
            reader.checkBitmap(g, e, bm);
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        }
        if (geo.typeOf(e) == L2Entry.COMPRESSED_CLUSTER) {
            add(out, new MapEntry(pos, n, 0, true, false, true, -1));
            return;
        }
        long base = e & L2Entry.OFFSET_MASK;
        long end = pos + n;
        while (pos < end) {
            int in = geo.inCluster(pos);
            int s = geo.subOf(in);
            int run = L2Entry.subRun(bm, s, L2Entry.SUBCLUSTERS);
            long len = Math.min(((long) (s + run) << geo.subclusterBits) - in, end - pos);
            long host = base == 0 ? -1 : base + in;
            switch (L2Entry.subType(bm, s)) {
                case L2Entry.SUB_DATA -> add(out, new MapEntry(pos, len, 0, true, false, true, host));
                case L2Entry.SUB_ZERO -> add(out, new MapEntry(pos, len, 0, true, true, false, host));
                default -> {
                    if (base != 0 && !backing.present()) add(out, new MapEntry(pos, len, 0, false, true, false, host));
                    else for (MapEntry m : backing.map(pos, len)) add(out, m);
                }
            }
            pos += len;
        }
    }

    /** Appends {@code m}, merged into the last entry when it continues it. */
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
        return new ImageInfo(geo.virtualSize, filename, geo.clusterSize, "qcow2", file.size(),
                (h.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0, h.version >= 3 ? "1.1" : "0.10",
                (h.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0, h.refcountBits(), guard.corruptBit(),
                (h.incompatible & Qcow2Header.INCOMPAT_EXTL2) != 0, h.compression.label, h.backingFile, h.backingFormat,
                h.dataFile, (h.autoclear & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0, encryption);
    }

    /** Throws the refusal of an image whose guest data the engine cannot reach. */
    private void refuseIo() throws Qcow2Exception {
        String why = ioRefusal();
        if (why != null) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, filename + ": " + why);
    }

    /**
     * Why the engine cannot read or write this image's guest data (external data file, encryption),
     * or null; such an image opens read-only, for info and (without encryption) check and map.
     */
    public String ioRefusal() {
        if (ioRefusal == null) return null;
        return ioRefusal + (h.cryptMethod != 0 ? "; only info describes this image" : "; only info, check and map describe this image");
    }

    /** The persistent dirty bitmaps, as {@code qemu-img info} lists them (empty when none or invalid). */
    public List<BitmapInfo> bitmaps() { return bitmaps.info(); }

    /**
     * True while this open postpones refcount-block writes (lazy refcounts, docs/ordering.md L1-L3):
     * its dirty bit then marks that, not an image that still needs a repair.
     */
    public boolean lazyRefcountsActive() { return guard.lazyActive(); }

    /**
     * Dirty extents ([start, length) in guest bytes, merged) of the consistent bitmap {@code name},
     * including the bits this open has set, or null when there is no such consistent bitmap.
     */
    public List<long[]> dirtyExtents(String name) { return bitmaps.dirtyExtents(name); }

    /** Names of the consistent bitmaps, whose bits {@link #bitmapRuns} reports. */
    public List<String> consistentBitmaps() { return bitmaps.consistentNames(); }

    /**
     * Runs {start, length, 1 dirty / 0 clean} of the consistent bitmap {@code name} over
     * [offset, offset+length), or null when there is no such consistent bitmap.
     */
    public List<long[]> bitmapRuns(String name, long offset, long length) throws IOException {
        checkRange(offset, length);
        return bitmaps.runs(name, offset, length);
    }

    /**
     * {@code qemu-img bitmap}: adds (granularity 0 = the default), removes, clears, enables or
     * disables the persistent bitmap {@code name}. Only on an image opened for writing that has not
     * been changed by this open; afterwards the open refuses writes (reopen to write).
     */
    public void editBitmap(BitmapOp op, String name, long granularity) throws IOException {
        guard.checkWritable();
        if (bitmaps.inUseNow()) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, filename + ": bitmaps are in use by this open (it wrote the image); edit them after closing it");
        exclusive.lockExclusive();
        try {
            BitmapEdits.apply(new BitmapEdits.Image() {
                @Override public IoBackend file() { return file; }
                @Override public Qcow2Header header() { return h; }
                @Override public Geometry geometry() { return geo; }
                @Override public long allocate(MetadataKind kind) throws IOException { return cache.withMeta(() -> alloc.allocClusterLocked(kind)); }
                @Override public void free(long offset, long clusters) throws IOException {
                    cache.withMeta(() -> {
                        alloc.queueFreeLocked(new HostRun(offset, clusters));
                        return null;
                    });
                }
                @Override public void flushFully() throws IOException { writeBack.flushFully(); }
                @Override public void writeFeatureBits() throws IOException { guard.writeFeatureBits(); }
            }, op, name, granularity);
        } finally {
            guard.refuse(filename + ": its bitmaps were edited; reopen the image to write it");
            exclusive.unlockExclusive();
        }
    }

    public CheckReport check(RepairMode mode) throws IOException {
        if (guard.closed()) throw new IOException(filename + ": image is closed");
        if (mode != RepairMode.NONE) refuseIo(); // a structural check reads metadata only
        if (mode != RepairMode.NONE && guard.openedReadOnly()) throw new IOException(filename + ": cannot repair an image opened read-only");
        if (mode != RepairMode.NONE) guard.beforeChange();
        return ImageCheck.run(checkSubject(), mode);
    }

    /** The narrow view {@link ImageCheck} works through. */
    private ImageCheck.Subject checkSubject() {
        return new ImageCheck.Subject() {
            @Override public String filename() { return filename; }
            @Override public IoBackend file() { return file; }
            @Override public Qcow2Header header() { return h; }
            @Override public Geometry geometry() { return geo; }
            @Override public int l1Entries() { return map.l1().length(); }
            @Override public SnapshotTable snapshots() { return snapshots.table(); }
            @Override public long refcountTableOffset() { return alloc.tableOffset(); }
            @Override public int refcountTableClusters() { return alloc.tableClusters(); }
            @Override public long[] refcountTable() { return alloc.table().copy(); }
            @Override public CachedTable refblock(long offset) throws IOException { return cache.load(offset, CachedTable.Kind.REFBLOCK); }
            @Override public boolean openedReadOnly() { return guard.openedReadOnly(); }

            @Override
            public void beginCheck(boolean repair) {
                exclusive.lockExclusive();
                guard.setRepairing(repair);
            }

            @Override
            public void endCheck() {
                guard.setRepairing(false);
                exclusive.unlockExclusive();
            }

            @Override public void flushFully() throws IOException { writeBack.flushFully(); }
            @Override public void clearCorrupt() throws IOException { guard.clearCorrupt(); }

            @Override
            public void setRefcount(long cluster, long value) throws IOException {
                cache.withMeta(() -> {
                    alloc.setRefcountLocked(cluster, value);
                    return null;
                });
            }

            @Override
            public void rebuildRefcounts(int[] counts, long start) throws IOException {
                cache.withMeta(() -> {
                    alloc.rebuildLocked(counts, start);
                    overlap.clearLocked();
                    markMetadata(map.l1().copy(), alloc.table().copy(), alloc.tableOffset(), alloc.tableClusters(), snapshots.table());
                    bitmaps.markClusters(overlap);
                    return null;
                });
            }

            @Override
            public void setL1Entry(int index, long entry) throws IOException {
                cache.withMeta(() -> {
                    map.setL1EntryLocked(index, entry);
                    return null;
                });
            }

            @Override
            public void setL2Entry(long l2Offset, int index, long entry) throws IOException {
                cache.withMeta(() -> {
                    cache.getLocked(l2Offset, CachedTable.Kind.L2).setEntry(index, entry);
                    return null;
                });
            }
        };
    }

    // ------------------------------------------------------------------ close

    @Override
    public void close() throws IOException {
        if (guard.closed()) return;
        exclusive.lockExclusive();
        try {
            if (guard.closed()) return;
            IOException first = null;
            try {
                if (!guard.openedReadOnly() && !guard.poisoned()) {
                    writeBack.flushFully();
                    // an image refused for writing (corrupt) writes no metadata: its bitmaps stay in use
                    if (guard.writeRefusal() == null) bitmaps.storeOnClose(
                            () -> cache.withMeta(() -> alloc.allocClusterLocked(MetadataKind.BITMAP_DATA)),
                            writeBack::flushFully);
                    writeBack.cutGivenBackTail(); // R17: the file ends where it did before the tail reserve
                    // L2: the dirty bit goes only after a full flush wrote every refcount block a lazy commit
                    // skipped (a corrupt image keeps it: its repair rebuilds the refcounts anyway)
                    if (guard.lazyActive() && !guard.poisoned() && !guard.corruptBit() && !writeBack.refcountsSkipped()) guard.clearDirty(false);
                }
            } catch (IOException e) {
                first = e;
            }
            guard.markClosed();
            try {
                backing.close();
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
                img.writer.preallocate(o.preallocation());
            }
        }
    }
}
