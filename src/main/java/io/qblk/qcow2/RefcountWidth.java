package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Changes the refcount width of an image (qemu-img amend -o refcount_bits=N) in the order of
 * docs/ordering.md rule R15:
 *
 * <ol>
 * <li>{@link #plan}: every refcount of the old structure is read; one that does not fit the new
 * width refuses the change with qemu-img's message (the first such cluster by offset), before
 * anything is written.</li>
 * <li>The new structure (blocks in block-index order, then the table) goes to the clusters from the
 * end of the file on, which nothing references and the old structure counts as free. It holds every
 * cluster's old refcount (the old blocks and table included) and counts its own clusters. Written,
 * then synced.</li>
 * <li>The header's refcount_table_offset, refcount_table_clusters and refcount_order (bytes 48..99,
 * inside the first sector) change in one write, synced: a crash leaves the old structure in charge
 * (the new one is unreferenced bytes past its end) or the new one, complete.</li>
 * <li>Last, the old blocks and table are released: the new blocks that count them are rewritten in
 * place with those counts lowered, synced. A torn write leaves each count old or new (each entry
 * lies in one sector): at worst leaked clusters.</li>
 * </ol>
 *
 * <p>The caller holds the image exclusively with everything flushed, and the engine's in-memory view
 * (geometry, cached refcount blocks) is stale afterwards: the image must be reopened.
 */
final class RefcountWidth {
    /** Header bytes 48..99: refcount_table_offset (48), refcount_table_clusters (56), ..., refcount_order (96). */
    private static final int FIELDS = 48, FIELDS_END = 100;
    /** At most this many new blocks go in one write. */
    private static final int BATCH_BYTES = 1 << 20;

    private final IoBackend file;
    private final String filename;
    private final Geometry geo;
    private final MetadataCache cache;
    private final long[] table;
    private final long tableOffset;
    private final int tableClusters;

    /** The new structure and what it needs, from {@link #plan}. */
    record Plan(Geometry geometry, RefcountLayout layout) {}

    RefcountWidth(IoBackend file, String filename, Geometry geo, MetadataCache cache, long[] table, long tableOffset, int tableClusters) {
        this.file = file;
        this.filename = filename;
        this.geo = geo;
        this.cache = cache;
        this.table = table;
        this.tableOffset = tableOffset;
        this.tableClusters = tableClusters;
    }

    /**
     * Reads every old refcount: refuses (qemu-img's message) when one does not fit in 2^{@code order}
     * bits, and places the new structure past the end of the file and past every counted cluster.
     */
    Plan plan(int order) throws IOException {
        Geometry ng = geo.withRefcountOrder(order);
        long max = ng.maxRefcount();
        TreeSet<Long> counted = new TreeSet<>();
        long last = -1;
        for (int bi = 0; bi < table.length; bi++) {
            CachedTable b = oldBlock(bi);
            if (b == null) continue;
            for (long slot = 0, n = geo.refcountsPerBlock(); slot < n; slot++) {
                long v = b.refcount((int) slot, geo.refcountOrder);
                if (v == 0) continue;
                long c = ((long) bi << geo.rbBits) + slot;
                if (Long.compareUnsigned(v, max) > 0)
                    throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Cannot decrease refcount entry width to " + (1 << order)
                            + " bits: Cluster at offset " + hex(c << geo.clusterBits) + " has a refcount of " + Long.toUnsignedString(v));
                if (last < 0 || ng.refblockIndex(c) != ng.refblockIndex(last)) counted.add(ng.refblockIndex(c));
                last = c;
            }
        }
        long start = Math.max((file.size() + geo.clusterSize - 1) >>> geo.clusterBits, last + 1);
        return new Plan(ng, RefcountLayout.plan(ng, counted, start, filename));
    }

    /** Writes the planned structure, switches the header to it and releases the old one (R15). */
    void write(Plan p) throws IOException {
        Geometry ng = p.geometry();
        RefcountLayout l = p.layout();
        int cs = geo.clusterSize;
        try (Arena a = Arena.ofConfined()) {
            // the new blocks, contiguous from l.start(), in batches; then the table
            int perBatch = Math.max(1, BATCH_BYTES / cs);
            MemorySegment batch = a.allocate((long) perBatch * cs, 4096);
            int inBatch = 0;
            long batchStart = l.start();
            for (int j = 0; j < l.blocks().size(); j++) {
                MemorySegment.copy(MemorySegment.ofArray(block(ng, l, l.blocks().get(j), null)), 0, batch, (long) inBatch * cs, cs);
                if (++inBatch == perBatch || j == l.blocks().size() - 1) {
                    file.write(batchStart << geo.clusterBits, batch.asSlice(0, (long) inBatch * cs));
                    batchStart += inBatch;
                    inBatch = 0;
                }
            }
            MemorySegment t = a.allocate(l.tableClusters() * cs, 4096);
            for (int j = 0; j < l.blocks().size(); j++) t.set(CachedTable.BE_LONG, l.blocks().get(j) * 8, (l.start() + j) << geo.clusterBits);
            file.write(l.tableCluster() << geo.clusterBits, t);
            file.datasync(); // R15: the whole new structure is durable before the header names it

            // one write inside the first sector: table offset, table clusters, refcount order
            MemorySegment h = a.allocate(FIELDS_END - FIELDS, 8);
            h.copyFrom(MemorySegment.ofArray(FileReads.bytes(file, FIELDS, FIELDS_END - FIELDS)));
            ByteBuffer hb = h.asByteBuffer().order(ByteOrder.BIG_ENDIAN);
            hb.putLong(0, l.tableCluster() << geo.clusterBits).putInt(8, (int) l.tableClusters()).putInt(FIELDS_END - 4 - FIELDS, ng.refcountOrder);
            file.write(FIELDS, h);
            file.datasync();

            // the old structure's clusters are free now: lower their counts in the new blocks, in place
            TreeMap<Long, Integer> blockAt = new TreeMap<>();
            for (int j = 0; j < l.blocks().size(); j++) blockAt.put(l.blocks().get(j), j);
            TreeSet<Long> old = oldStructure(), touched = new TreeSet<>();
            for (long c : old) touched.add(ng.refblockIndex(c));
            MemorySegment one = a.allocate(cs, 4096);
            for (long nbi : touched) {
                Integer j = blockAt.get(nbi);
                if (j == null) continue; // (a hostile image) an old block nothing counted
                one.copyFrom(MemorySegment.ofArray(block(ng, l, nbi, old)));
                file.write((l.start() + j) << geo.clusterBits, one);
            }
            file.datasync();
        }
    }

    /** The old structure's clusters: its table and every block it points at. */
    private TreeSet<Long> oldStructure() {
        TreeSet<Long> s = new TreeSet<>();
        long first = tableOffset >>> geo.clusterBits;
        for (long c = 0; c < tableClusters; c++) s.add(first + c);
        for (long e : table) if ((e & Geometry.REFTABLE_OFFSET_MASK) != 0) s.add((e & Geometry.REFTABLE_OFFSET_MASK) >>> geo.clusterBits);
        return s;
    }

    /**
     * New block {@code nbi}: each cluster's old refcount, 1 for the new structure's own clusters;
     * the clusters of {@code released} (the old structure, once the header no longer names it) lowered by one.
     */
    private byte[] block(Geometry ng, RefcountLayout l, long nbi, TreeSet<Long> released) throws IOException {
        CachedTable b = CachedTable.refblock(0, null, geo.clusterSize);
        long first = nbi << ng.rbBits, end = Math.min(first + ng.refcountsPerBlock(), l.end());
        for (long c = first; c < end; c++) {
            long v = l.holds(c) ? 1 : oldRefcount(c);
            if (released != null && v > 0 && released.contains(c)) v--;
            if (v != 0) b.setRefcount(ng.refblockSlot(c), ng.refcountOrder, v);
        }
        return b.refcountBytes();
    }

    private long oldRefcount(long c) throws IOException {
        long bi = geo.refblockIndex(c);
        if (bi >= table.length) return 0;
        CachedTable b = oldBlock((int) bi);
        return b == null ? 0 : b.refcount(geo.refblockSlot(c), geo.refcountOrder);
    }

    private CachedTable oldBlock(int bi) throws IOException {
        long off = table[bi] & Geometry.REFTABLE_OFFSET_MASK;
        return off == 0 ? null : cache.load(off, CachedTable.Kind.REFBLOCK);
    }

    /** qemu's {@code %#x}: 0 without a prefix. */
    private static String hex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }
}
