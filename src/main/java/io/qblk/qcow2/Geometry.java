package io.qblk.qcow2;

/**
 * An image's fixed layout arithmetic: cluster size, entries per L2 table and per refcount block,
 * guest offset → L1/L2 index, host cluster → refcount block/slot. Pure values, no I/O.
 */
final class Geometry {
    /** Mask of the offset in a refcount-table entry (bits 9..63; the low bits are reserved). */
    static final long REFTABLE_OFFSET_MASK = ~511L;

    final int clusterSize;
    final int clusterBits;
    /** log2(entries per L2 table). */
    final int l2Bits;
    final int l2Mask;
    /** log2(refcount width in bits). */
    final int refcountOrder;
    /** log2(refcount entries per refcount block). */
    final int rbBits;
    final long rbMask;
    final int version;
    final long virtualSize;
    /** 128-bit L2 entries with 32 subclusters per cluster (incompatible feature bit 4). */
    final boolean extendedL2;
    /** The image keeps its data clusters in an external data file. */
    final boolean dataFile;
    /** Bytes of one subcluster (the cluster size without extended L2). */
    final int subclusterSize;
    final int subclusterBits;

    Geometry(int clusterBits, int refcountOrder, int version, long virtualSize) {
        this(clusterBits, refcountOrder, version, virtualSize, false);
    }

    Geometry(int clusterBits, int refcountOrder, int version, long virtualSize, boolean extendedL2) {
        this(clusterBits, refcountOrder, version, virtualSize, extendedL2, false);
    }

    Geometry(int clusterBits, int refcountOrder, int version, long virtualSize, boolean extendedL2, boolean dataFile) {
        this.dataFile = dataFile;
        this.clusterBits = clusterBits;
        this.clusterSize = 1 << clusterBits;
        this.extendedL2 = extendedL2;
        this.subclusterBits = extendedL2 ? clusterBits - 5 : clusterBits;
        this.subclusterSize = 1 << subclusterBits;
        this.l2Bits = clusterBits - (extendedL2 ? 4 : 3);
        this.l2Mask = (1 << l2Bits) - 1;
        this.refcountOrder = refcountOrder;
        this.rbBits = clusterBits + 3 - refcountOrder;
        this.rbMask = (1L << rbBits) - 1;
        this.version = version;
        this.virtualSize = virtualSize;
    }

    /** The same layout for a guest disk of {@code size} bytes (an internal snapshot of another size). */
    Geometry withVirtualSize(long size) {
        return new Geometry(clusterBits, refcountOrder, version, size, extendedL2, dataFile);
    }

    static Geometry of(Qcow2Header h) {
        return new Geometry(h.clusterBits, h.refcountOrder, h.version, h.size, (h.incompatible & Qcow2Header.INCOMPAT_EXTL2) != 0, h.hasDataFile());
    }

    /** The same layout with refcounts of 2^{@code order} bits (amend's change of the refcount width). */
    Geometry withRefcountOrder(int order) {
        return new Geometry(clusterBits, order, version, virtualSize, extendedL2, dataFile);
    }

    /** Guest cluster number of a guest byte offset (also host cluster index of a host offset). */
    long clusterOf(long offset) { return offset >>> clusterBits; }

    int inCluster(long offset) { return (int) (offset & (clusterSize - 1)); }

    long clusterStart(long offset) { return offset & ~(long) (clusterSize - 1); }

    boolean aligned(long offset) { return (offset & (clusterSize - 1)) == 0; }

    int l1Index(long guestCluster) { return (int) (guestCluster >>> l2Bits); }

    int l2Index(long guestCluster) { return (int) (guestCluster & l2Mask); }

    /** First guest cluster after the L2 table that maps {@code guestCluster}. */
    long nextL2Boundary(long guestCluster) { return ((guestCluster >>> l2Bits) + 1) << l2Bits; }

    long refblockIndex(long hostCluster) { return hostCluster >>> rbBits; }

    int refblockSlot(long hostCluster) { return (int) (hostCluster & rbMask); }

    long refcountsPerBlock() { return 1L << rbBits; }

    /** 8-byte entries (L1, refcount table) per cluster. */
    int entriesPerCluster() { return clusterSize / 8; }

    /** The cluster of an 8-byte-entry table that holds entry {@code i}. */
    int tableClusterOf(long i) { return (int) (i * 8 / clusterSize); }

    long maxRefcount() { return refcountOrder == 6 ? Long.MAX_VALUE : (1L << (1 << refcountOrder)) - 1; }

    long guestClusters() { return (virtualSize + clusterSize - 1) >>> clusterBits; }

    /** 8-byte words per L2 entry: 2 with extended L2 (entry, then subcluster bitmap). */
    int l2Stride() { return extendedL2 ? 2 : 1; }

    /** Subcluster index of a byte offset within its cluster. */
    int subOf(int inCluster) { return inCluster >>> subclusterBits; }

    /** The entry's cluster type; with extended L2 the reserved bit 0 is not a zero flag (zeroes live in the bitmap). */
    /**
     * The type of L2 entry {@code e}. With an external data file, host offset 0 is a valid place in
     * that file: an entry with offset 0 and OFLAG_COPIED (every data-file cluster has refcount 1)
     * is a normal cluster there, as qemu reads it.
     */
    int typeOf(long e) {
        int t = L2Entry.type(extendedL2 ? e & ~L2Entry.ZERO_FLAG : e, version);
        return dataFile && t == L2Entry.UNALLOCATED && L2Entry.copied(e) ? L2Entry.NORMAL : t;
    }

    HostRange compressedRange(long e) { return L2Entry.compressedRange(e, clusterBits); }

    /** The host cluster a standard entry for guest cluster g maps to; refuses an unaligned one. */
    long hostOf(long e, long g) throws MetadataCorruption {
        long off = e & L2Entry.OFFSET_MASK;
        if (!aligned(off))
            throw new MetadataCorruption("L2 entry for guest offset " + (g << clusterBits) + " points to unaligned host offset " + off);
        return off;
    }
}
