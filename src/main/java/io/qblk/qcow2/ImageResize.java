package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Changes the virtual size of an open qcow2 image ({@link Qcow2Image#resize}), in the order of
 * docs/ordering.md rules R8-R10:
 *
 * <ul>
 * <li>Growing within the L1 table's reach: the header's size field, synced (R10).</li>
 * <li>Growing past it: a new, exactly sized L1 table in fresh contiguous clusters (refcounts raised in
 * memory first, R2), written with the old entries and synced together with its refcounts (R8); then
 * the header's size, l1_size and l1_table_offset fields in one write inside the first 512-byte sector,
 * synced (R9); only then is the old table queued for release, which R4 applies after a flush.</li>
 * <li>Shrinking: every cluster past the new end (rounded up to a cluster) is unmapped (full discard,
 * freed under R4) and flushed before the header's size field is written (R10), so a crash leaves
 * either the old size or the new one, never a size that maps freed clusters.</li>
 * </ul>
 *
 * <p>The engine's in-memory view (geometry, L1 table) keeps the old size: after a resize the image
 * refuses further writes and must be reopened.
 */
final class ImageResize {
    /** Offset of the size field in the header; l1_size follows at 36 and l1_table_offset at 40. */
    private static final int SIZE_FIELD = 24, L1_FIELDS_END = 48;

    private final IoBackend file;
    private final String filename;
    private final Qcow2Header h;
    private final Geometry geo;
    private final MetadataCache cache;
    private final RefcountAllocator alloc;
    private final ClusterMap map;
    private final WriteBack writeBack;

    ImageResize(IoBackend file, String filename, Qcow2Header h, Geometry geo, MetadataCache cache, RefcountAllocator alloc,
                ClusterMap map, WriteBack writeBack) {
        this.file = file;
        this.filename = filename;
        this.h = h;
        this.geo = geo;
        this.cache = cache;
        this.alloc = alloc;
        this.map = map;
        this.writeBack = writeBack;
    }

    /** L1 entries needed to map {@code size} bytes. */
    long l1EntriesFor(long size) {
        long perEntry = (long) geo.clusterSize * (geo.clusterSize / 8);
        return (size + perEntry - 1) / perEntry;
    }

    /** Writes the size field alone, synced (R10; snapshot apply across sizes, S7). */
    void writeSize(long size) throws IOException { writeHeaderFields(size, h.l1Size, h.l1TableOffset, SIZE_FIELD + 8); }

    /** Grows to {@code newSize} (everything before was flushed by the caller). */
    void grow(long newSize) throws IOException {
        long need = l1EntriesFor(newSize);
        if (need > Qcow2Header.MAX_L1_ENTRIES)
            throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": size " + newSize + " needs an L1 table of " + need + " entries (limit " + Qcow2Header.MAX_L1_ENTRIES + ")");
        if (need <= h.l1Size) {
            writeHeaderFields(newSize, h.l1Size, h.l1TableOffset, SIZE_FIELD + 8);
            return;
        }
        int cs = geo.clusterSize;
        int clusters = (int) ((need * 8 + cs - 1) / cs);
        long newL1 = allocateContiguous(clusters);
        // R8: the new table's contents, then the flush that writes its refcounts (phase A) and syncs both.
        long[] old = map.l1().copy();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate((long) clusters * cs, 4096);
            ByteBuffer bb = buf.asByteBuffer().order(ByteOrder.BIG_ENDIAN);
            for (int i = 0; i < old.length; i++) bb.putLong(i * 8, old[i]);
            file.write(newL1, buf);
        }
        writeBack.dataWritten();
        writeBack.flush();
        file.datasync();
        long oldOffset = h.l1TableOffset;
        int oldSize = h.l1Size;
        // R9: size, l1_size and l1_table_offset in one sector, synced: the old table or the new one.
        writeHeaderFields(newSize, (int) need, newL1, L1_FIELDS_END);
        if (oldSize > 0) {
            long oldClusters = ((long) oldSize * 8 + cs - 1) / cs;
            cache.withMeta(() -> {
                alloc.queueFreeLocked(new HostRun(oldOffset, oldClusters)); // R4: after the switch is durable
                return null;
            });
        }
        writeBack.flushFully();
    }

    /**
     * Shrinks to {@code newSize}: unmaps every cluster past it and frees the L2 tables wholly past it
     * (their L1 entries zeroed first, R4), flushes, then writes the size (R10); then, holding the
     * image exclusively, drops the refcount blocks that count nothing (R16) and cuts the file after
     * its last cluster in use (R14).
     */
    void shrink(Qcow2Image img, long newSize, SharedExclusiveLock exclusive) throws IOException {
        long from = (newSize + geo.clusterSize - 1) & ~(long) (geo.clusterSize - 1);
        if (from < geo.virtualSize) img.deallocate(from, geo.virtualSize - from);
        long keepL1 = l1EntriesFor(newSize);
        cache.withMeta(() -> {
            for (int i = (int) keepL1; i < map.l1().length(); i++) {
                long l2 = map.l1().get(i) & L2Entry.OFFSET_MASK;
                if (l2 == 0) continue;
                map.setL1EntryLocked(i, 0);
                alloc.queueFreeLocked(new HostRun(l2, 1)); // R4: after the zeroed L1 entry is durable
            }
            return null;
        });
        writeBack.flushFully();
        writeHeaderFields(newSize, h.l1Size, h.l1TableOffset, SIZE_FIELD + 8);
        exclusive.lockExclusive(); // R16: no allocation until the dropped blocks' table entries are durable
        try {
            dropEmptyRefblocks();
            truncateUnused();
        } finally {
            exclusive.unlockExclusive();
        }
    }

    /**
     * R16: takes the refcount blocks that count nothing (but their own cluster) out of the refcount
     * table, as qemu does after a shrink, and makes that durable (a full flush: the table entries in
     * phase A, synced; a block counted by another block is released after that sync, R4) while the
     * caller holds the image exclusively, so nothing can allocate the clusters those blocks held
     * before the table no longer points at them on disk.
     */
    private void dropEmptyRefblocks() throws IOException {
        boolean dropped = false;
        for (int bi = 0, n = cache.withMeta(() -> alloc.table().length()); bi < n; bi++) {
            int i = bi;
            dropped |= cache.withMeta(() -> alloc.dropEmptyRefblockLocked(i));
        }
        if (dropped) writeBack.flushFully();
    }

    /**
     * R14: cuts the file after the last cluster whose refcount is not zero, as qemu does after a
     * shrink. Every refcount is durable here (the flush before the size write, and R16's flush of
     * the dropped refcount blocks), so nothing that is still referenced, nor any refcount that may
     * come back after a crash, lies past the cut.
     */
    private void truncateUnused() throws IOException {
        writeBack.truncateUnused(0);
    }

    /**
     * Fresh clusters {@code [start, start + n)} with refcount 1 in memory, for the L1 table. Clusters
     * the allocator hands out that do not continue the run are given back at once (nothing refers to
     * them); the allocator moves forward, so a run is found at the latest at the end of the file.
     */
    private long allocateContiguous(int n) throws IOException {
        List<Long> stray = new ArrayList<>();
        long start = -1;
        int got = 0;
        while (got < n) {
            long c = cache.withMeta(() -> alloc.allocClusterLocked(MetadataKind.L1));
            if (got > 0 && c == start + ((long) got << geo.clusterBits)) {
                got++;
            } else {
                for (int i = 0; i < got; i++) stray.add(start + ((long) i << geo.clusterBits));
                start = c;
                got = 1;
            }
        }
        if (!stray.isEmpty()) {
            cache.withMeta(() -> {
                for (long c : stray) alloc.decrementLocked(geo.clusterOf(c));
                return null;
            });
        }
        return start;
    }

    /** Writes header bytes 24..{@code end} (size [, l1_size, l1_table_offset]) and syncs them. */
    private void writeHeaderFields(long size, int l1Size, long l1Offset, int end) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(end - SIZE_FIELD, 8);
            ByteBuffer b = s.asByteBuffer().order(ByteOrder.BIG_ENDIAN);
            b.putLong(0, size);
            if (end > SIZE_FIELD + 8) {
                b.putInt(8, h.cryptMethod);
                b.putInt(12, l1Size);
                b.putLong(16, l1Offset);
            }
            file.write(SIZE_FIELD, s);
            file.datasync();
        }
        h.size = size;
        h.l1Size = l1Size;
        h.l1TableOffset = l1Offset;
    }
}
