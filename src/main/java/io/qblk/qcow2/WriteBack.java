package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.invoke.VarHandle;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Writes the cached metadata back in the order of docs/ordering.md: every rule about <em>when</em>
 * something reaches the file lives here. The in-memory changes it writes are made elsewhere under
 * the metadata lock (allocations: {@link RefcountAllocator}, mappings: {@link ClusterMap},
 * {@link ClusterWriter}); a flush takes a consistent snapshot of them under that lock and writes it
 * without the lock:
 *
 * <pre>
 *  A0  fresh refcount blocks, a relocated refcount table          -> datasync   (R3)
 *  A   dirty refcount blocks, refcount-table clusters, header
 *      field of a relocated table, fresh L2 tables; covers every
 *      completed data write                                      -> datasync   (R1, R2, R3)
 *  B   dirty existing L2 tables, dirty L1 clusters               -> datasync   (skipped by a commit)
 *  then frees queued before the snapshot, after a grace period               (R4, R5)
 * </pre>
 *
 * Write-through ({@link MetadataWrite#WRITETHROUGH}): a request that changed a mapping waits for a
 * <em>commit</em> (a flush without B's sync) covering its change; one commit serves every request
 * queued behind the flush lock (group commit).
 *
 * <p>Lazy refcounts (rules L1-L3, docs/ordering.md): once the dirty bit is durable
 * ({@link WriteGuard#lazyActive}), a commit leaves dirty <em>existing</em> refcount blocks out of its
 * snapshot (R2 is then kept by the dirty bit: the next read-write open rebuilds the refcounts from
 * the tables); it still writes fresh blocks and a relocated table in A0 (R3) and syncs before B (R1).
 * A full flush writes everything; the dirty bit is cleared at close only after one that left nothing
 * a commit skipped ({@link #refcountsSkipped}).
 */
final class WriteBack {
    private final IoBackend file;
    private final String filename;
    private final Qcow2Header h;
    private final int cs;
    private final boolean extendedL2;
    private final MetadataCache cache;
    private final RefcountAllocator alloc;
    private final ClusterMap map;
    private final OverlapCheck overlap;
    private final WriteGuard guard;
    private final IoEpochs epochs;
    private final SharedExclusiveLock exclusive;
    private final EngineStats stats;
    private final MetadataWrite metadataWrite;
    private final DiscardMode discard;

    private final ReentrantLock flushLock = new ReentrantLock();
    /** Where a flush serializes what it writes; used under flushLock only. */
    private final FlushBuffers buffers = new FlushBuffers();
    /**
     * Guest-visible mapping changes made so far (L2 entries set by writes, zeroes, discards); changed
     * under meta, before the entry itself (W1), and read without a lock by {@link #afterInPlaceWrite}.
     */
    private volatile long mappingChanges;
    /**
     * A mapping change since the last snapshot that needs phase A's sync before its L2/L1 write
     * (every change but R17's tail mappings); guarded by meta.
     */
    private boolean orderedChange;
    /** How many of them a successful flush has written to the file (in rule order); written under flushLock. */
    private volatile long committedChanges;
    /**
     * Frees whose dropping L2/L1 entries a commit wrote without the final sync (rule R4 waits for
     * that sync): applied after the next flush, whose phase-A sync covers those writes. Guarded by flushLock.
     */
    private List<HostRun> unsyncedFrees = new ArrayList<>();
    /** A write completed since the last datasync: the next flush must sync even with no metadata to write (R1). */
    private volatile boolean unsyncedWrites;
    /**
     * A lazy commit left dirty refcount blocks unwritten and no full flush has written them since
     * (rule L2: the dirty bit stays set while this is true). Written under flushLock.
     */
    private volatile boolean refcountsSkipped;

    WriteBack(IoBackend file, String filename, Qcow2Header h, Geometry geo, MetadataCache cache, RefcountAllocator alloc, ClusterMap map,
            OverlapCheck overlap, WriteGuard guard, IoEpochs epochs, SharedExclusiveLock exclusive, EngineStats stats, MetadataWrite metadataWrite,
            DiscardMode discard) {
        this.file = file;
        this.filename = filename;
        this.h = h;
        this.cs = geo.clusterSize;
        this.extendedL2 = geo.extendedL2;
        this.cache = cache;
        this.alloc = alloc;
        this.map = map;
        this.overlap = overlap;
        this.guard = guard;
        this.epochs = epochs;
        this.exclusive = exclusive;
        this.stats = stats;
        this.metadataWrite = metadataWrite;
        this.discard = discard;
    }

    /**
     * W2: writes the frontend submits itself ({@link ClusterWriter#planWrite}) that were planned and
     * whose completion has not been reported yet ({@link #plannedWriteDone}). The kernel may complete
     * such a write, and the request it belongs to, before its completion reaches us: while any is
     * counted, a flush syncs ({@link #dataUnsynced}).
     */
    private final java.util.concurrent.atomic.AtomicInteger plannedWrites = new java.util.concurrent.atomic.AtomicInteger();

    /** W2: before a planned write is submitted. */
    void plannedWriteStarted() {
        plannedWrites.incrementAndGet();
        stats.plannedWrites.increment();
    }

    /** W2: after a planned write completed (or failed). */
    void plannedWriteDone() {
        // The order does matter: the flag first, then the count. A flush reads them the other way
        // round (dataUnsynced), so one that finds the count already down finds the flag set, or a
        // sync that began after this write completed
        dataWritten();
        plannedWrites.decrementAndGet();
    }

    /**
     * Whether a flush owes data writes a sync: completed writes not covered by a sync yet, or planned
     * writes in flight (W2: the count read first, see {@link #plannedWriteDone}).
     */
    private boolean dataUnsynced() {
        return plannedWrites.get() > 0 || unsyncedWrites;
    }

    /**
     * W1 at planning time, after the lookups: whether every mapping change so far is in the file, so
     * an in-place write through the entries just looked up need not wait (see {@link #afterInPlaceWrite}).
     */
    boolean mappingsCommitted() {
        VarHandle.loadLoadFence();
        long want = mappingChanges;
        return committedChanges >= want;
    }

    /** After a data write completed (never before: a flush that starts later must sync it, R1). */
    void dataWritten() {
        // read first: a volatile store on every write costs a full fence, a volatile read does not. Seeing
        // true is enough: the store of false that a sync makes before its fdatasync is then later in the
        // synchronization order than this write's completion, so that fdatasync covers the write
        if (!unsyncedWrites) unsyncedWrites = true;
    }

    /**
     * Under meta, in the critical section that sets an L2 entry, BEFORE the entry is stored (W1):
     * counts the change for write-through.
     */
    void mappingChangedLocked() {
        countMappingChangeLocked();
        orderedChange = true;
    }

    /**
     * Under meta, instead of {@link #mappingChangedLocked} (also before the entry is stored): an R17
     * tail mapping (a ready tail cluster mapped where the guest read zeroes, non-extended L2), whose
     * L2 write needs no sync before it.
     */
    void tailMappingChangedLocked() {
        countMappingChangeLocked();
    }

    // W1, the writer's side: the count is stored before the entry (a volatile store alone would let
    // the later plain store of the entry move above it), so an in-place writer that sees the entry
    // also sees this count or a later one (its side: afterInPlaceWrite).
    private void countMappingChangeLocked() {
        mappingChanges = mappingChanges + 1; // under meta: no lost update
        VarHandle.storeStoreFence();
    }

    /** R17: the reserve could not be made (a limit, or no fallocate): no more attempts. */
    private volatile boolean noTail;

    /** R17: the fresh zero tail is used by write-through on non-extended-L2 images. */
    boolean usesTail() {
        return writeThrough() && !extendedL2 && !noTail;
    }

    /**
     * R17: clusters the reserve is topped up to (flush lock). It starts at 2 MiB worth (at least 8,
     * at most 256 clusters), which keeps depth-1 writers on the tail; when allocations between two
     * commits found it empty (many writers in flight, or one request over many clusters), or a
     * reserve lasted fewer than {@link #FAST_REFILL} commits (each refill costs every waiting writer
     * a sync), it doubles, up to 16 times that or 32 MiB worth. A crash leaks at most the unused reserve.
     */
    private int tailTarget;
    /** R17: a refill fewer than this many commits after the previous one doubles the reserve. */
    static final int FAST_REFILL = 8;
    /** R17: commits since the last refill (flush lock). */
    private int commitsSinceRefill = FAST_REFILL;

    private int tailBase() {
        return (int) Math.max(8, Math.min(256, (2L << 20) / cs));
    }

    private int tailCap() {
        return (int) Math.max(tailBase(), Math.min(16L * tailBase(), (32L << 20) / cs));
    }

    boolean writeThrough() {
        return metadataWrite == MetadataWrite.WRITETHROUGH;
    }

    /**
     * After a request: write-through commit if it changed a mapping, or if it wrote in place into a
     * cluster whose mapping may not be in the file yet (W1); then a flush if the cache is over budget.
     */
    void afterRequest(boolean mapped, boolean inPlace) throws IOException {
        if (writeThrough()) {
            if (mapped) commit();
            else if (inPlace) afterInPlaceWrite();
        }
        if (cache.overBudget()) flush(); // also after a commit: a lazy one leaves refcount blocks dirty
    }

    /**
     * W1, the in-place writer's side, after its lookups and data writes: the entries it wrote through
     * may have been set by allocating writes whose commit has not written them yet (another writer
     * maps a cluster, then this one writes into it before that commit ran); this write completes only
     * once they are in the file. The load fence keeps the loads of those entries before the load of
     * the count (the writer stored the count first), so the count read covers every entry seen.
     * Nothing uncommitted (a preallocated image, or no allocation lately): two volatile loads.
     */
    private void afterInPlaceWrite() throws IOException {
        VarHandle.loadLoadFence();
        long want = mappingChanges;
        if (committedChanges < want) commitUpTo(want);
    }

    /** Rule L2: true while refcount blocks a lazy commit skipped may still be unwritten. */
    boolean refcountsSkipped() {
        return refcountsSkipped;
    }

    void flushIfOverBudget() throws IOException {
        if (cache.overBudget()) flush();
    }

    /** A full flush: everything changed so far is durable when it returns ("flush means durable"). */
    void flush() throws IOException {
        if (guard.openedReadOnly() || guard.closed()) return;
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
     * Flushes twice so that also refcount decrements applied after the first flush are on disk. First
     * gives the R17 tail reserve back: whoever needs everything durable also needs exact refcounts
     * (close, check, resize, snapshots, bitmaps).
     */
    void flushFully() throws IOException {
        if (guard.openedReadOnly()) return;
        if (!guard.closed() && !guard.metadataFrozen()) cache.withMeta(() -> {
            alloc.giveBackTailLocked();
            return null;
        });
        flush();
        flush();
    }

    /**
     * After {@link #flushFully} (the give-back durable): cuts the file after its last cluster whose
     * refcount is not zero (R14), but never below {@code floor} (bytes). Exclusive lock held: nothing
     * allocates meanwhile.
     */
    void truncateUnused(long floor) throws IOException {
        long end = Math.max(floor, cache.withMeta(alloc::usedClustersLocked) << h.clusterBits);
        if (end >= file.size()) return;
        file.truncate(end);
        sync();
    }

    /** At close, after the last {@link #flushFully}: R17, the file ends where the given-back tail reserve began, or at its last used cluster after that. */
    void cutGivenBackTail() throws IOException {
        long from = cache.withMeta(alloc::takeTailCutLocked);
        if (from >= 0) truncateUnused(from);
    }

    /**
     * {@link MetadataWrite#WRITETHROUGH}: returns once every mapping change made before the call is
     * in the file, after the data and refcounts it depends on were synced. Callers queue on the flush
     * lock; whoever gets it runs a flush for all changes made so far that skips only the last sync
     * (phase B's: the next flush's phase-A sync covers it), and those whose changes that flush
     * covered return without another one (group commit).
     */
    void commit() throws IOException {
        commitUpTo(mappingChanges);
    }

    /** {@link #commit} of the first {@code want} mapping changes (and whatever else the flush finds). */
    private void commitUpTo(long want) throws IOException {
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

    /** One metadata cluster (or part) to write during a flush. */
    private record Item(long offset, MemorySegment bytes, MetadataKind kind, CachedTable table, int gen) {}

    /** The snapshot a flush writes, taken under the metadata lock. */
    private record Snapshot(List<Item> a0, List<Item> a, List<Item> b, RefcountAllocator.TableChanges table, BitSet l1Dirty,
                            List<HostRun> frees, long covered, boolean skippedRefblocks, boolean ordered, boolean reserving) {}

    /**
     * One flush; {@code syncMappings} false skips the sync after phase B (a commit): the L2/L1
     * writes are then in the file but not yet durable, and the frees they allow wait for the next
     * flush (see {@link #unsyncedFrees}).
     */
    private void flushLocked(boolean syncMappings) throws IOException {
        stats.flushes.increment();
        guard.checkNotPoisoned();
        if (guard.metadataFrozen()) {
            // Corrupt: write no metadata at all, only make completed data writes durable.
            if (dataUnsynced()) sync();
            return;
        }
        // Frees a previous commit left waiting: their L2/L1 writes become durable with this flush's phase-A sync.
        List<HostRun> ready = unsyncedFrees;
        unsyncedFrees = new ArrayList<>();
        List<HostRun> frees;
        boolean wroteB;
        // L1: a commit skips existing refcount blocks only once the dirty bit is durable
        boolean lazy = !syncMappings && guard.lazyActive();
        if (!syncMappings && usesTail()) reserveTail();
        try {
            Snapshot s;
            String bad;
            cache.lock();
            try {
                s = snapshotLocked(buffers, lazy);
                bad = overlapLocked(s);
            } finally {
                cache.unlock();
            }
            if (bad != null) {
                restore(s);
                unsyncedFrees.addAll(0, ready);
                throw guard.corrupted(new MetadataCorruption(bad));
            }
            try {
                // The order does matter: each phase writes only what the previous syncs made safe to reference.
                if (!s.a0.isEmpty()) { // R3: new refcount blocks and a relocated table before anything points to them
                    writeAll(s.a0);
                    sync();
                }
                // R17: a commit that only maps ready tail clusters (nothing else to write in A0/A, no frees
                // waiting for a sync) writes its L2 tables without phase A's sync; unsyncedWrites stays set,
                // so the next full flush still syncs the data
                boolean tailOnly = !syncMappings && s.a0.isEmpty() && s.a.isEmpty() && !s.ordered && !s.reserving && s.frees.isEmpty() && ready.isEmpty();
                if (!tailOnly && (!s.a.isEmpty() || !s.b.isEmpty() || dataUnsynced() || s.reserving)) {
                    // R1 + R2: data and refcounts synced before any L2/L1 entry (phase B) references them;
                    // R3: new L2 tables synced before their L1 entries; R17: a tail reserve's refcounts and extent
                    writeAll(s.a);
                    sync();
                    if (s.reserving) cache.withMeta(() -> {
                        alloc.tailSyncedLocked();
                        return null;
                    });
                } else if (tailOnly && !s.b.isEmpty()) {
                    stats.tailCommits.increment();
                }
                if (!s.b.isEmpty()) {
                    writeAll(s.b);
                    if (syncMappings) sync();
                    else unsyncedWrites = true; // the next flush's phase A syncs these writes
                }
            } catch (IOException ex) {
                restore(s);
                unsyncedFrees.addAll(0, ready);
                throw ex;
            }
            markWritten(s);
            committedChanges = Math.max(committedChanges, s.covered);
            // L2: a full flush wrote every refcount block dirty at its snapshot, so also those earlier commits skipped
            if (lazy) refcountsSkipped |= s.skippedRefblocks;
            else refcountsSkipped = false;
            frees = s.frees;
            wroteB = !s.b.isEmpty();
        } finally {
            buffers.reset();
        }
        // R4: a free is applied only after the sync that made its dropped reference durable.
        if (!syncMappings && wroteB) {
            unsyncedFrees.addAll(frees);
            frees = ready;
        } else {
            frees.addAll(0, ready);
        }
        if (!frees.isEmpty()) applyFrees(frees);
    }

    /**
     * R17, flush lock held, before a commit's snapshot: when the ready reserve runs low, reserves tail
     * clusters (refcounts raised in memory, so the snapshot holds them) and extends the file over
     * them (fallocate: they read as zeroes; never shrinks what concurrent writes extended). The
     * commit's phase-A sync then makes them ready. If the clusters cannot be reserved or the file
     * cannot be extended, the reserve is given back and the commit goes on without one.
     */
    private void reserveTail() throws IOException {
        try {
            long[] range = cache.withMeta(() -> {
                if (tailTarget == 0) {
                    tailTarget = tailBase();
                    alloc.takeTailMissesLocked(); // before the first reserve every take misses
                } else if (alloc.takeTailMissesLocked() > 0) tailTarget = Math.min(2 * tailTarget, tailCap());
                stats.tailTarget = tailTarget;
                return alloc.reserveTailLocked(tailTarget);
            });
            if (range != null) {
                if (commitsSinceRefill < FAST_REFILL) tailTarget = Math.min(2 * tailTarget, tailCap()); // the next refill
                commitsSinceRefill = 0;
                stats.tailTarget = tailTarget;
                file.allocate(range[0], range[1] - range[0]);
            } else commitsSinceRefill++;
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        } catch (IOException e) {
            // Nothing references the reserve: give it back whole (a pending reserve is always extended).
            cache.withMeta(() -> {
                alloc.giveBackTailLocked();
                return null;
            });
            // A limit or a file system without fallocate: no reserve, the commits take the ordered path.
            // Any other error (EIO, ENOSPC) is the request's, with its kind.
            if (e instanceof Qcow2Exception || (e instanceof io.qblk.io.ErrnoException ee && ee.errno() == io.qblk.io.Errno.EOPNOTSUPP)) noTail = true;
            else throw e;
        }
    }

    /**
     * Under meta: copies of every dirty cluster, sorted into phases, and the frees queued so far.
     * {@code lazy} (a commit with the dirty bit durable, rule L1) leaves dirty existing refcount
     * blocks out: they stay dirty in the cache for a later full flush.
     */
    private Snapshot snapshotLocked(SegmentAllocator arena, boolean lazy) {
        List<Item> a0 = new ArrayList<>(), a = new ArrayList<>(), b = new ArrayList<>();
        long covered = mappingChanges;
        boolean ordered = orderedChange;
        orderedChange = false;
        boolean reserving = alloc.tailPendingLocked();
        RefcountAllocator.TableChanges table = alloc.takeChangesLocked();
        BitSet l1D = map.l1().takeDirtyLocked();
        List<HostRun> frees = alloc.takePendingFreesLocked();
        boolean[] skipped = {false};
        cache.forEachDirtyLocked(CachedTable.Kind.REFBLOCK, t -> {
            if (t.fresh) snap(arena, t, a0); // R3 holds under L1 too: a table entry never points at an unwritten block
            else if (lazy) skipped[0] = true;
            else snap(arena, t, a);
        });
        cache.forEachDirtyLocked(CachedTable.Kind.L2, t -> snap(arena, t, t.fresh ? a : b));
        PointerTable rt = alloc.table();
        if (table.relocated()) {
            a0.add(new Item(alloc.tableOffset(), rt.allBytes(arena), MetadataKind.REFCOUNT_TABLE, null, 0));
            MemorySegment hb = arena.allocate(12);
            hb.copyFrom(MemorySegment.ofArray(headerRefcountFields()));
            a.add(new Item(48, hb, MetadataKind.HEADER, null, 0));
        } else {
            BitSet d = table.dirtyClusters();
            for (int c = d.nextSetBit(0); c >= 0; c = d.nextSetBit(c + 1))
                a.add(new Item(alloc.tableOffset() + (long) c * cs, rt.clusterBytes(arena, c), MetadataKind.REFCOUNT_TABLE, null, 0));
        }
        PointerTable l1 = map.l1();
        for (int c = l1D.nextSetBit(0); c >= 0; c = l1D.nextSetBit(c + 1))
            b.add(new Item(map.l1Offset() + (long) c * cs, l1.clusterBytes(arena, c), MetadataKind.L1, null, 0));
        return new Snapshot(a0, a, b, table, l1D, frees, covered, skipped[0], ordered, reserving);
    }

    /** Under meta: the first metadata write of the snapshot that would land on other metadata, or null. */
    private String overlapLocked(Snapshot s) {
        for (List<Item> list : List.of(s.a0, s.a, s.b))
            for (Item it : list) {
                String bad = overlap.metadataOverlapLocked(it.offset, it.bytes.byteSize(), it.kind);
                if (bad != null) return bad;
            }
        return null;
    }

    /**
     * Under meta, R18: copies of the dirty table's changed pages into {@code out}, one item per run of
     * consecutive changed pages (a fresh table: one item, the whole cluster). Every item carries the
     * table's generation, which {@link #markWritten} makes its clean generation.
     */
    private void snap(SegmentAllocator arena, CachedTable t, List<Item> out) {
        MetadataKind kind = t.kind == CachedTable.Kind.L2 ? MetadataKind.L2 : MetadataKind.REFCOUNT_BLOCK;
        int pages = t.pageCount(), pb = t.pageBytes();
        int last = -1; // the control of CrashStateExplorerTest: the last changed page of a table with several is left out
        if (leaveOutAPage && !t.fresh) for (int p = 0, n = 0; p < pages; p++) if (t.pageDirty(p) && ++n > 1) last = p;
        for (int p = 0; p < pages; ) {
            if (!t.pageDirty(p) || p == last) {
                p++;
                continue;
            }
            int end = p + 1;
            while (end < pages && t.pageDirty(end) && end != last) end++;
            MemorySegment s = arena.allocate((long) (end - p) * pb, CachedTable.PAGE);
            t.serializePages(p, end, s);
            out.add(new Item(t.offset + (long) p * pb, s, kind, t, t.dirtyGen));
            p = end;
        }
    }

    /** Test-only mutant (docs/ordering.md R18's control): a flush leaves out one changed page of a table. Never set outside tests. */
    static volatile boolean leaveOutAPage;

    private byte[] headerRefcountFields() {
        ByteBuffer bb = ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN);
        bb.putLong(alloc.tableOffset()).putInt(alloc.tableClusters());
        return bb.array();
    }

    /** After the phases: what was written is clean (unless it changed again since the snapshot). */
    private void markWritten(Snapshot s) {
        cache.lock();
        try {
            for (List<Item> list : List.of(s.a0, s.a, s.b)) {
                for (Item it : list) {
                    if (it.table == null) continue;
                    it.table.fresh = false;
                    it.table.cleanGen = it.gen;
                }
            }
            if (s.table.relocated()) {
                h.refcountTableOffset = alloc.tableOffset();
                h.refcountTableClusters = alloc.tableClusters();
            }
            cache.evictLocked();
        } finally {
            cache.unlock();
        }
    }

    /** A failed flush: nothing was marked clean; the next flush writes the same clusters and frees again. */
    private void restore(Snapshot s) {
        cache.lock();
        try {
            alloc.restoreChangesLocked(s.table);
            map.l1().restoreDirtyLocked(s.l1Dirty);
            alloc.restorePendingFreesLocked(s.frees);
            orderedChange |= s.ordered;
        } finally {
            cache.unlock();
        }
    }

    /**
     * One phase's writes as one batch ({@link IoBackend#writeAll}: on io_uring one submission, one
     * wait): they may land in any order, which the rules allow within a phase; the phase's sync (or,
     * for a commit's phase B, the request's completion) comes only after all of them completed. A
     * failure leaves the whole phase unwritten for {@link #restore}.
     */
    private void writeAll(List<Item> items) throws IOException {
        if (items.isEmpty()) return;
        List<IoBackend.Write> writes = new ArrayList<>(items.size());
        long bytes = 0;
        for (Item it : items) {
            writes.add(new IoBackend.Write(it.offset, it.bytes));
            bytes += it.bytes.byteSize();
        }
        file.writeAll(writes);
        stats.metadataBytesWritten.add(bytes);
    }

    private void sync() throws IOException {
        unsyncedWrites = false;
        stats.datasyncs.increment();
        try {
            file.datasync();
        } catch (IOException e) {
            guard.poison(e);
            throw e;
        }
    }

    /**
     * R5 then R4: waits until no I/O that may still use an old mapping is running, then drops the
     * refcounts. With {@link DiscardMode#UNMAP}, R7: the clusters whose refcount these frees take to
     * 0 are punched out of the file first, while their refcount still keeps the allocator away.
     */
    /**
     * R7: punches a hole over every cluster the frees will free for good (refcount equal to the
     * number of frees of it). Nothing on disk references them any more (R4 ran the sync), and
     * nothing can allocate them before {@link #applyFrees} decrements, so no live data is punched.
     */
    private void punchFreed(List<HostRun> frees) throws IOException {
        java.util.TreeMap<Long, Integer> times = new java.util.TreeMap<>();
        for (HostRun r : frees) {
            long first = r.offset() >>> h.clusterBits;
            for (long c = 0; c < r.clusters(); c++) times.merge(first + c, 1, Integer::sum);
        }
        List<Long> gone = cache.withMeta(() -> {
            List<Long> g = new ArrayList<>();
            for (var e : times.entrySet()) if (alloc.refcountLocked(e.getKey()) == e.getValue()) g.add(e.getKey());
            return g;
        });
        long runStart = -1, runEnd = -1;
        for (long c : gone) {
            if (c == runEnd) {
                runEnd++;
                continue;
            }
            if (runStart >= 0) punch(runStart, runEnd);
            runStart = c;
            runEnd = c + 1;
        }
        if (runStart >= 0) punch(runStart, runEnd);
    }

    /**
     * Punches clusters [from, to). Best effort: a failure leaves the blocks allocated (the free
     * itself still happens; a failing disk shows at the next datasync, which poisons the image).
     */
    private void punch(long from, long to) {
        try {
            file.punchHole(from << h.clusterBits, (to - from) << h.clusterBits);
            stats.holesPunched.add(to - from);
        } catch (IOException e) {
            // keep the blocks
        }
    }

    private void applyFrees(List<HostRun> frees) throws IOException {
        epochs.synchronize();
        if (discard == DiscardMode.UNMAP) punchFreed(frees);
        var at = new Object() {
            int run;
            long cluster;
        };
        cache.withMeta(() -> {
            for (; at.run < frees.size(); at.run++, at.cluster = 0) {
                HostRun r = frees.get(at.run);
                long first = r.offset() >>> h.clusterBits;
                for (; at.cluster < r.clusters(); at.cluster++) alloc.decrementLocked(first + at.cluster);
            }
            return null;
        });
    }
}
