package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The read path: guest range → L2 entries (lock-free lookups) → host reads, coalescing runs of
 * contiguous host clusters; zero clusters read as zeroes, unallocated ones from the backing chain,
 * compressed ones decompressed ({@link CompressionType}). Rule R5: each lookup and the read that uses it run inside one
 * {@link IoEpochs} section, so a cluster freed meanwhile is not reused before the read has left.
 */
final class ClusterReader {
    private final IoBackend file;
    private final String filename;
    private final Geometry geo;
    private final ClusterMap map;
    private final BackingChain backing;
    private final IoEpochs epochs;
    private final BufferPool clusterPool;
    private final CompressionType compression;
    private final int cs, clusterBits;

    ClusterReader(IoBackend file, String filename, Geometry geo, ClusterMap map, BackingChain backing, IoEpochs epochs, BufferPool clusterPool,
            CompressionType compression) {
        this.compression = compression;
        this.file = file;
        this.filename = filename;
        this.geo = geo;
        this.map = map;
        this.backing = backing;
        this.epochs = epochs;
        this.clusterPool = clusterPool;
        this.cs = geo.clusterSize;
        this.clusterBits = geo.clusterBits;
    }

    /** Reads guest bytes at {@code offset} into {@code dst} (range already checked). */
    void read(long offset, MemorySegment dst) throws IOException {
        long len = dst.byteSize();
        int slot = epochs.enter();
        try {
            long pos = 0;
            while (pos < len) {
                long gOff = offset + pos;
                long g = gOff >>> clusterBits;
                int in = (int) (gOff & (cs - 1));
                long n = Math.min(cs - in, len - pos);
                long e = map.lookup(g);
                int type = geo.typeOf(e);
                if (type == L2Entry.NORMAL) {
                    long host = geo.hostOf(e, g);
                    long run = map.contiguousRun(g, host, n, len - pos, false);
                    file.read(host + in, dst.asSlice(pos, run));
                    pos += run;
                    continue;
                }
                MemorySegment part = dst.asSlice(pos, n);
                switch (type) {
                    case L2Entry.UNALLOCATED -> backing.read(gOff, part);
                    case L2Entry.COMPRESSED_CLUSTER -> readCompressed(e, in, part);
                    default -> part.fill((byte) 0);
                }
                pos += n;
            }
        } finally {
            epochs.exit(slot);
        }
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

    private void decompress(long e, MemorySegment out) throws IOException {
        HostRange r = geo.compressedRange(e);
        if (r.length() > 2L * cs + 1024 || r.offset() + r.length() > Qcow2Header.MAX_HOST_OFFSET)
            throw new MetadataCorruption("compressed cluster at " + r.offset() + " has an impossible size " + r.length());
        int n = (int) r.length();
        byte[] raw = new byte[n], plain = new byte[(int) out.byteSize()];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment in = a.allocate(n, 4096);
            file.read(r.offset(), in); // past the end of the file reads zeroes: not part of the stream
            MemorySegment.copy(in, ValueLayout.JAVA_BYTE, 0, raw, 0, n);
        }
        compression.decompress(raw, n, plain, filename + ": compressed cluster at " + r.offset());
        MemorySegment.copy(plain, 0, out, ValueLayout.JAVA_BYTE, 0, plain.length);
    }

    /** True when {@link #oldContents} would produce only zeroes for guest cluster g with entry {@code old}. */
    boolean oldReadsAsZero(long g, long old) {
        return switch (geo.typeOf(old)) {
            case L2Entry.UNALLOCATED -> backing.readsAsZero(g << clusterBits);
            case L2Entry.ZERO_PLAIN, L2Entry.ZERO_ALLOC -> true;
            default -> false;
        };
    }

    /** What guest cluster g with entry {@code old} reads as, whole cluster (copy-on-write source). */
    void oldContents(long g, long old, MemorySegment buf) throws IOException {
        switch (geo.typeOf(old)) {
            case L2Entry.UNALLOCATED -> backing.read(g << clusterBits, buf);
            case L2Entry.NORMAL -> file.read(geo.hostOf(old, g), buf); // shared cluster: copy on write
            case L2Entry.COMPRESSED_CLUSTER -> decompress(old, buf);
            default -> buf.fill((byte) 0);
        }
        long gOff = g << clusterBits;
        if (gOff + cs > geo.virtualSize) buf.asSlice(geo.virtualSize - gOff).fill((byte) 0);
    }
}
