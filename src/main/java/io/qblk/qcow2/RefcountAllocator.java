package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/**
 * Refcounts and cluster allocation: the refcount table (in memory whole), refcount blocks (through
 * the {@link MetadataCache}), the free-cluster hint and the frees waiting for a flush. Everything
 * here runs under the metadata lock and changes memory only; {@link WriteBack} writes it in rule
 * order (docs/ordering.md):
 *
 * <ul>
 * <li>R2: an allocation raises the refcount in memory before the caller can reference the cluster,
 * so every snapshot that holds the reference also holds the refcount.</li>
 * <li>R3: a new refcount block is created fresh (written in phase A0) and linked into the table in
 * memory; a grown table is a new, relocated table (written whole in A0, the header in A).</li>
 * <li>R4: a free is only queued ({@link #queueFreeLocked}); the decrement happens after the flush
 * that made the dropped reference durable ({@link WriteBack}), so until then the cluster keeps
 * refcount ≥ 1 and the allocator cannot hand it out.</li>
 * <li>R17: the fresh zero tail, clusters past the end of the file reserved with refcount 1 and
 * never referenced ({@link #reserveTailLocked}); they are <em>ready</em> for mapping without a
 * sync only after a flush's phase-A sync covered their refcounts and the file extent over them
 * ({@link #tailSyncedLocked}), and given back ({@link #giveBackTailLocked}) before anything that
 * needs exact refcounts.</li>
 * </ul>
 */
final class RefcountAllocator {
    private final IoBackend file;
    private final String filename;
    private final Geometry geo;
    private final MetadataCache cache;
    private final OverlapCheck overlap;
    private final EngineStats stats;
    private final int cs, clusterBits, order;

    private PointerTable table;
    private long tableOffset;
    private int tableClusters;
    private boolean relocated;
    private long freeHint;
    /** The host cluster compressed clusters are packed into (-1: none yet) and its next free byte. */
    private long packCluster = -1;
    private int packPos;
    private ArrayList<HostRun> pendingFrees = new ArrayList<>();
    /** R17: reserved tail clusters (byte offsets) whose refcount and extent a phase-A sync made durable, lowest first. */
    private final java.util.ArrayDeque<Long> tailReady = new java.util.ArrayDeque<>();
    /** R17: reserved tail clusters not yet covered by a phase-A sync. */
    private final ArrayList<Long> tailPending = new ArrayList<>();
    /** R17: the lowest tail cluster given back since the last {@link #takeTailCutLocked} (-1: none). */
    private long tailCut = -1;
    /** R17: takes that found no ready tail cluster since the last {@link #takeTailMissesLocked}. */
    private long tailMisses;

    RefcountAllocator(IoBackend file, String filename, Geometry geo, MetadataCache cache, OverlapCheck overlap, EngineStats stats,
            long[] entries, long tableOffset, int tableClusters) {
        this.file = file;
        this.filename = filename;
        this.geo = geo;
        this.cache = cache;
        this.overlap = overlap;
        this.stats = stats;
        this.cs = geo.clusterSize;
        this.clusterBits = geo.clusterBits;
        this.order = geo.refcountOrder;
        this.table = new PointerTable(entries, cs);
        this.tableOffset = tableOffset;
        this.tableClusters = tableClusters;
    }

    // ---------------------------------------------------------------- refcounts

    private long blockOffset(long bi) {
        return table.get((int) bi) & Geometry.REFTABLE_OFFSET_MASK;
    }

    /** Under meta: the refcount block covering host cluster {@code ci}, null if none; may throw NeedLoad. */
    CachedTable refblockLocked(long ci) {
        long bi = geo.refblockIndex(ci);
        if (bi >= table.length()) return null;
        long boff = blockOffset(bi);
        if (boff == 0) return null;
        return cache.getLocked(boff, CachedTable.Kind.REFBLOCK);
    }

    long refcountLocked(long ci) {
        CachedTable b = refblockLocked(ci);
        return b == null ? 0 : b.refcount(geo.refblockSlot(ci), order);
    }

    /** Under meta: sets a refcount (check's repair), creating a refcount block if none covers the cluster. */
    void setRefcountLocked(long ci, long value) throws IOException {
        packCluster = -1; // repair may change what the packing cluster holds: start a fresh one
        long bi = geo.refblockIndex(ci);
        while (bi >= table.length()) growTableLocked();
        if (blockOffset(bi) == 0) {
            long saved = freeHint;
            freeHint = Math.max(freeHint, fileClustersLocked());
            long off = allocClusterLocked(MetadataKind.REFCOUNT_BLOCK);
            freeHint = saved;
            if (blockOffset(bi) != 0) {
                // the allocator itself placed a block for this range (self-describing): use that one
                refblockLocked(geo.clusterOf(off)).setRefcount(geo.refblockSlot(geo.clusterOf(off)), order, 0);
                overlap.forgetLocked(off);
                refblockLocked(ci).setRefcount(geo.refblockSlot(ci), order, value);
                return;
            }
            linkNewRefblockLocked(off, table, bi);
        }
        refblockLocked(ci).setRefcount(geo.refblockSlot(ci), order, value);
        if (value == 0) freeHint = Math.min(freeHint, ci);
    }

    /**
     * Under meta: one past the last host cluster below the end of the file whose refcount is not zero
     * (the length, in clusters, a file needs to keep everything in use). May throw NeedLoad.
     */
    long usedClustersLocked() {
        for (long ci = fileClustersLocked() - 1; ci >= 0; ci--) if (refcountLocked(ci) != 0) return ci + 1;
        return 0;
    }

    /**
     * Under meta (and the image's exclusive lock: nothing may allocate until the change is durable,
     * docs/ordering.md R16): takes refcount block {@code bi} out of the table when it counts nothing
     * but, possibly, its own cluster, as qemu does after a shrink. The table entry changes in memory
     * (written in place by the next flush's phase A); a block counted by another block is queued for
     * release (R4: applied after that write is durable), a block that counted itself takes its count
     * with it. Returns whether the block was dropped. May throw NeedLoad before changing anything.
     */
    boolean dropEmptyRefblockLocked(int bi) {
        long boff = bi < table.length() ? blockOffset(bi) : 0;
        if (boff == 0) return false;
        CachedTable b = cache.getLocked(boff, CachedTable.Kind.REFBLOCK);
        long self = geo.clusterOf(boff);
        int selfSlot = geo.refblockIndex(self) == bi ? geo.refblockSlot(self) : -1;
        for (int slot = 0, n = (int) geo.refcountsPerBlock(); slot < n; slot++)
            if (slot != selfSlot && b.refcount(slot, order) != 0) return false;
        if (b.dirty()) return false; // (not after the flush that precedes a drop) its counts are not on disk yet
        table.setLocked(bi, 0);
        cache.discardLocked(boff, CachedTable.Kind.REFBLOCK);
        overlap.forgetLocked(boff);
        if (selfSlot < 0) pendingFrees.add(new HostRun(boff, 1));
        return true;
    }

    /** Under meta: how many host clusters below the end of the file have a refcount, counting no further than {@code limit}. May throw NeedLoad. */
    long countUsedLocked(long limit) {
        long n = 0;
        for (long ci = 0, end = fileClustersLocked(); ci < end && n < limit; ci++) if (refcountLocked(ci) != 0) n++;
        return n;
    }

    private long fileClustersLocked() {
        try {
            return (file.size() + cs - 1) >>> clusterBits;
        } catch (IOException e) {
            return freeHint;
        }
    }

    /**
     * Under meta: takes a free host cluster (refcount 0 → 1) for metadata of kind {@code kind}
     * (null = guest data). May throw NeedLoad before changing anything but fresh refcount blocks.
     */
    long allocClusterLocked(MetadataKind kind) throws IOException {
        long idx = freeHint;
        while (true) {
            long bi = geo.refblockIndex(idx);
            if (bi >= table.length()) {
                growTableLocked();
                idx = freeHint;
                continue;
            }
            long boff = blockOffset(bi);
            if (boff == 0) {
                long off = idx << clusterBits;
                MetadataKind existing = overlap.kindAt(off);
                if (existing != null) throw new MetadataCorruption("cluster at " + off + " holds the " + existing.label + " but no refcount block covers it");
                linkNewRefblockLocked(off, table, bi); // the block describes itself: its cluster is idx
                idx++;
                continue;
            }
            CachedTable b = cache.getLocked(boff, CachedTable.Kind.REFBLOCK);
            long end = (bi + 1) << geo.rbBits;
            for (; idx < end; idx++) {
                if (b.refcount(geo.refblockSlot(idx), order) == 0) {
                    long off = idx << clusterBits;
                    if (off >= Qcow2Header.MAX_HOST_OFFSET) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": image file reached the 64 PiB offset limit");
                    MetadataKind existing = overlap.kindAt(off);
                    if (existing != null)
                        throw new MetadataCorruption("cluster at " + off + " holds the " + existing.label + " but its refcount is 0");
                    b.setRefcount(geo.refblockSlot(idx), order, 1);
                    stats.allocations.increment();
                    if (kind != null) overlap.markLocked(off, kind);
                    freeHint = idx + 1;
                    return off;
                }
            }
            freeHint = Math.max(freeHint, idx);
        }
    }

    /**
     * Under meta: a fresh refcount block at {@code off}, entry {@code bi} of {@code into} (the live
     * table, or a grown one not yet referenced); a block inside the range it covers counts itself.
     * Rule R3: fresh, so phase A0 writes and syncs it before phase A writes the table entry.
     */
    private CachedTable linkNewRefblockLocked(long off, PointerTable into, long bi) {
        CachedTable b = cache.addFreshLocked(off, CachedTable.Kind.REFBLOCK);
        if (into == table) into.setLocked((int) bi, off);
        else into.setUntracked((int) bi, off);
        overlap.markLocked(off, MetadataKind.REFCOUNT_BLOCK);
        long self = geo.clusterOf(off);
        if (geo.refblockIndex(self) == bi) b.setRefcount(geo.refblockSlot(self), order, 1);
        return b;
    }

    /** Under meta: a bigger refcount table, placed with its new refcount blocks right after the covered range. */
    private void growTableLocked() throws IOException {
        int oldLen = table.length();
        int perCluster = geo.entriesPerCluster();
        long base = (long) oldLen << geo.rbBits;
        long newLen = Math.max(oldLen + perCluster, (long) oldLen * 3 / 2);
        newLen = (newLen + perCluster - 1) / perCluster * perCluster;
        long n = newLen / perCluster;
        if (n * cs > Qcow2Header.MAX_REFTABLE_BYTES) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": refcount table would exceed 8 MiB");
        long entries = geo.refcountsPerBlock();
        long k = 1;
        while (k + n > k * entries) k++;
        if (oldLen + k > newLen) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": cannot grow the refcount table");
        PointerTable grown = table.grown((int) newLen);
        CachedTable[] blocks = new CachedTable[(int) k];
        for (int j = 0; j < k; j++) blocks[j] = linkNewRefblockLocked((base + j) << clusterBits, grown, oldLen + j);
        for (long c = base; c < base + k + n; c++) blocks[(int) (geo.refblockIndex(c) - oldLen)].setRefcount(geo.refblockSlot(c), order, 1);
        pendingFrees.add(new HostRun(tableOffset, tableClusters)); // R4: the old table is freed after a flush
        table = grown;
        tableOffset = (base + k) << clusterBits;
        tableClusters = (int) n;
        relocated = true;
        for (long c = 0; c < n; c++) overlap.markLocked(tableOffset + (c << clusterBits), MetadataKind.REFCOUNT_TABLE);
        freeHint = Math.max(freeHint, base + k + n);
    }

    /** Under meta: refcount + 1 of a cluster in use (a snapshot takes another reference); may throw NeedLoad before changing anything. */
    void incrementLocked(long ci) throws IOException {
        CachedTable b = refblockLocked(ci);
        long v = b == null ? 0 : b.refcount(geo.refblockSlot(ci), order);
        if (v == 0) throw new MetadataCorruption("cluster " + ci + " is referenced but its refcount is 0");
        if (v >= geo.maxRefcount())
            throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": refcount of cluster " + ci + " would exceed the " + (1 << order) + "-bit maximum " + geo.maxRefcount());
        b.setRefcount(geo.refblockSlot(ci), order, v + 1);
    }

    /**
     * Under meta: replaces the whole refcount structure by a new one (check's rebuild, when the old
     * one is beyond saving): {@code counts[c]} is the refcount of host cluster {@code c}; the new
     * refcount blocks and table go at cluster {@code start} and after (the end of the file, so they
     * overwrite nothing the old header still reaches) and count themselves. Only blocks that hold a
     * non-zero refcount are created. Rule R3 (ordering.md R6): all of it is fresh and the table is
     * "relocated", so the next flush writes blocks and table in phase A0, syncs, and only then
     * points the header at the table in phase A; a crash before that leaves the old structure in
     * charge, one after it the new one, and the old structure's clusters are merely unreferenced.
     * Returns the first cluster after the new structure.
     */
    long rebuildLocked(int[] counts, long start) throws IOException {
        java.util.TreeSet<Long> counted = new java.util.TreeSet<>();
        for (int c = 0; c < counts.length; c++) {
            if (counts[c] == 0) continue;
            counted.add(geo.refblockIndex(c));
            c = (int) Math.min(Integer.MAX_VALUE - 1L, ((geo.refblockIndex(c) + 1) << geo.rbBits) - 1);
        }
        RefcountLayout l = RefcountLayout.plan(geo, counted, start, filename);
        int perCluster = geo.entriesPerCluster();
        long t = l.tableClusters(), end = l.end();
        cache.dropRefblocksLocked();
        long max = geo.maxRefcount();
        PointerTable fresh = new PointerTable(new long[(int) (t * perCluster)], cs);
        long at = start;
        for (long bi : l.blocks()) {
            long off = at++ << clusterBits;
            CachedTable b = cache.addFreshLocked(off, CachedTable.Kind.REFBLOCK);
            fresh.setUntracked((int) bi, off);
            for (long c = bi << geo.rbBits, last = Math.min((bi + 1) << geo.rbBits, end); c < last; c++) {
                long v = c < counts.length ? counts[(int) c] : c >= start ? 1 : 0;
                if (v != 0) b.setRefcount(geo.refblockSlot(c), order, Math.min(v, max));
            }
        }
        table = fresh;
        tableOffset = l.tableCluster() << clusterBits;
        tableClusters = (int) t;
        relocated = true;
        freeHint = 0;
        pendingFrees = new ArrayList<>(); // counts already say what is in use now
        tailReady.clear(); // R17: unreferenced, so the counts gave them refcount 0
        tailPending.clear();
        return end;
    }

    /**
     * Under meta: room for {@code bytes} (at most one cluster) of compressed data, packed byte for
     * byte right after the previous compressed cluster (in the same host cluster, or
     * spanning into the next one when that one is free); every compressed cluster holds one
     * reference to each host cluster its data touches (R2: raised here, before
     * the entry can map it). Returns the host byte offset.
     */
    long allocCompressedLocked(int bytes) throws IOException {
        if (bytes <= 0 || bytes > cs) throw new IllegalArgumentException("compressed allocation of " + bytes + " bytes");
        if (packCluster >= 0 && packPos < cs) {
            CachedTable b = refblockLocked(packCluster); // may throw NeedLoad before any change
            int slot = geo.refblockSlot(packCluster);
            long v = b == null ? 0 : b.refcount(slot, order);
            if (v > 0 && v < geo.maxRefcount()) {
                long off = (packCluster << clusterBits) + packPos;
                if (packPos + bytes <= cs) {
                    b.setRefcount(slot, order, v + 1);
                    packPos += bytes;
                    return off;
                }
                // Span into the next host cluster when it is free and counted by the same block, as
                // qemu packs them: then the data references both clusters.
                long next = packCluster + 1, nextOff = next << clusterBits;
                if (geo.refblockIndex(next) == geo.refblockIndex(packCluster) && b.refcount(geo.refblockSlot(next), order) == 0
                        && nextOff < Qcow2Header.MAX_HOST_OFFSET && overlap.kindAt(nextOff) == null) {
                    b.setRefcount(slot, order, v + 1);
                    b.setRefcount(geo.refblockSlot(next), order, 1);
                    stats.allocations.increment();
                    packCluster = next;
                    packPos = bytes - (cs - packPos);
                    return off;
                }
            }
        }
        long host = allocClusterLocked(null);
        packCluster = host >>> clusterBits;
        packPos = bytes;
        return host;
    }

    /** Under meta: refcount - 1; returns false if the refcount was already 0. */
    boolean decrementLocked(long ci) {
        CachedTable b = refblockLocked(ci);
        if (b == null) return false;
        int i = geo.refblockSlot(ci);
        long v = b.refcount(i, order);
        if (v == 0) return false;
        b.setRefcount(i, order, v - 1);
        if (v == 1) {
            if (ci == packCluster) packCluster = -1; // free again: no longer ours to pack into
            freeHint = Math.min(freeHint, ci);
            overlap.forgetLocked(ci << clusterBits);
        }
        return true;
    }

    // ---------------------------------------------------------------- the fresh zero tail (rule R17)

    /**
     * Under meta: when fewer than half of {@code n} reserved clusters are ready and none is pending,
     * reserves {@code n} clusters at or after the end of the file (never a hole inside it: it may hold
     * stale bytes), refcount 0 → 1 so nothing else allocates them. Returns [first, end) byte offsets
     * of the pending reserve for the caller to extend the file over (null when nothing is pending).
     * May throw NeedLoad; a retry continues the same reserve.
     */
    long[] reserveTailLocked(int n) throws IOException {
        if (tailPending.isEmpty() && tailReady.size() >= n / 2) return null;
        if (tailPending.size() < n) {
            long saved = freeHint;
            try {
                freeHint = Math.max(freeHint, fileClustersLocked());
                if (!tailPending.isEmpty()) freeHint = Math.max(freeHint, geo.clusterOf(tailPending.getLast()) + 1);
                while (tailPending.size() < n) tailPending.add(allocClusterLocked(null));
            } finally {
                freeHint = saved;
            }
        }
        long first = Long.MAX_VALUE, end = 0;
        for (long off : tailPending) {
            first = Math.min(first, off);
            end = Math.max(end, off + cs);
        }
        return new long[] {first, end};
    }

    /** Under meta: how many allocations found the ready reserve empty since the last call. */
    long takeTailMissesLocked() {
        long m = tailMisses;
        tailMisses = 0;
        return m;
    }

    /** Under meta: whether a reserve waits for the phase-A sync that makes it ready. */
    boolean tailPendingLocked() {
        return !tailPending.isEmpty();
    }

    /** Under meta, after a phase-A sync that followed the reservation and the file extension: the pending reserve is ready. */
    void tailSyncedLocked() {
        tailPending.sort(null);
        tailReady.addAll(tailPending);
        tailPending.clear();
    }

    /** Under meta: a ready tail cluster (byte offset), or -1 when none is ready. Its refcount (1) is durable and it reads as zeroes. */
    long takeTailLocked() {
        Long off = tailReady.pollFirst();
        if (off == null) {
            tailMisses++;
            stats.tailMisses.increment();
            return -1;
        }
        return off;
    }

    /**
     * Under meta: gives every reserved tail cluster back (refcount 1 → 0: nothing ever referenced it),
     * for a close or an operation that needs exact refcounts. May throw NeedLoad; a retry goes on
     * where it stopped.
     */
    void giveBackTailLocked() {
        for (java.util.Collection<Long> q : List.of(tailReady, tailPending)) {
            for (var it = q.iterator(); it.hasNext(); ) {
                long off = it.next();
                decrementLocked(geo.clusterOf(off));
                it.remove();
                tailCut = tailCut < 0 ? off : Math.min(tailCut, off);
            }
        }
    }

    /** Under meta: the lowest tail cluster given back since the last call (-1: none), the floor for cutting the file. */
    long takeTailCutLocked() {
        long c = tailCut;
        tailCut = -1;
        return c;
    }

    // ---------------------------------------------------------------- frees (rule R4)

    /** Under meta: queues host clusters for release after the next flush. */
    void queueFreeLocked(HostRun run) {
        pendingFrees.add(run);
    }

    /** Under meta: queues the host clusters an L2 entry references for release after the next flush. */
    void queueEntryFreeLocked(long e) {
        switch (geo.typeOf(e)) {
            case L2Entry.NORMAL, L2Entry.ZERO_ALLOC -> pendingFrees.add(new HostRun(e & L2Entry.OFFSET_MASK, 1));
            case L2Entry.COMPRESSED_CLUSTER -> {
                HostRange c = geo.compressedRange(e);
                long first = geo.clusterOf(c.offset()), last = geo.clusterOf(c.offset() + c.length() - 1);
                pendingFrees.add(new HostRun(first << clusterBits, last - first + 1));
            }
            default -> {}
        }
    }

    /** Under meta: the frees queued so far (a flush snapshot takes them). */
    List<HostRun> takePendingFreesLocked() {
        List<HostRun> f = pendingFrees;
        pendingFrees = new ArrayList<>();
        return f;
    }

    /** Under meta: gives back frees a failed flush took. */
    void restorePendingFreesLocked(List<HostRun> frees) {
        pendingFrees.addAll(0, frees);
    }

    // ---------------------------------------------------------------- the refcount table, for write-back and check

    /** What changed in the refcount table since the last flush. */
    record TableChanges(boolean relocated, BitSet dirtyClusters) {}

    /** Under meta: the table's changes, now marked written (give them back with {@link #restoreChangesLocked}). */
    TableChanges takeChangesLocked() {
        TableChanges c = new TableChanges(relocated, table.takeDirtyLocked());
        relocated = false;
        return c;
    }

    void restoreChangesLocked(TableChanges c) {
        relocated |= c.relocated();
        table.restoreDirtyLocked(c.dirtyClusters());
    }

    PointerTable table() { return table; }

    long tableOffset() { return tableOffset; }

    int tableClusters() { return tableClusters; }
}
