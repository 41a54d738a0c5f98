package io.qblk.qcow2;

import java.util.List;
import java.util.TreeSet;

/**
 * Where a whole new refcount structure goes when it is written past the end of the file and counts
 * its own clusters (check's rebuild, docs/ordering.md R6; amend's change of the refcount width,
 * R15): its refcount blocks, in block-index order, in the clusters from {@code start}, then its
 * table. Only blocks that hold a non-zero refcount exist; the blocks covering the structure itself
 * are among them.
 *
 * @param blocks        the refcount-block indices (of the new structure's geometry) that get a block, ascending
 * @param start         the first cluster of the structure (block {@code blocks.get(0)} goes there)
 * @param tableClusters clusters of the new refcount table
 */
record RefcountLayout(List<Long> blocks, long start, long tableClusters) {

    /**
     * Plans the structure for geometry {@code g} at cluster {@code start}: {@code counted} are the
     * block indices that hold a non-zero refcount of the clusters before {@code start}. The blocks
     * and table need refcounts too, so the plan grows until it covers itself.
     */
    static RefcountLayout plan(Geometry g, TreeSet<Long> counted, long start, String filename) throws Qcow2Exception {
        TreeSet<Long> blocks = new TreeSet<>(counted);
        int perCluster = g.entriesPerCluster();
        long k, t, end;
        while (true) {
            k = blocks.size();
            t = Math.max(1, ((blocks.isEmpty() ? 0 : blocks.last()) + perCluster) / perCluster);
            end = start + k + t;
            boolean added = false;
            for (long bi = g.refblockIndex(start); bi <= g.refblockIndex(end - 1); bi++) added |= blocks.add(bi);
            if (!added) break;
        }
        if (t * g.clusterSize > Qcow2Header.MAX_REFTABLE_BYTES || (end << g.clusterBits) >= Qcow2Header.MAX_HOST_OFFSET)
            throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": a new refcount table would exceed its size limit");
        return new RefcountLayout(List.copyOf(blocks), start, t);
    }

    /** The first cluster of the table (right after the blocks). */
    long tableCluster() { return start + blocks.size(); }

    /** The first cluster after the structure. */
    long end() { return tableCluster() + tableClusters; }

    /** Whether host cluster {@code c} is one of the structure's own (counted 1 by it). */
    boolean holds(long c) { return c >= start && c < end(); }
}
