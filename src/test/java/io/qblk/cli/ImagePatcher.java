package io.qblk.cli;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;

/** Edits qcow2 header and metadata fields in place (big-endian), for leak/corruption/malformed-header tests. */
public final class ImagePatcher implements AutoCloseable {
    private final RandomAccessFile f;

    public ImagePatcher(Path file) throws IOException {
        f = new RandomAccessFile(file.toFile(), "rw");
    }

    public long u64(long at) throws IOException { f.seek(at); return f.readLong(); }
    public int u32(long at) throws IOException { f.seek(at); return f.readInt(); }
    public void u64(long at, long v) throws IOException { f.seek(at); f.writeLong(v); }
    public void u32(long at, int v) throws IOException { f.seek(at); f.writeInt(v); }
    public void u8(long at, int v) throws IOException { f.seek(at); f.write(v); }
    public long length() throws IOException { return f.length(); }
    public void setLength(long l) throws IOException { f.setLength(l); }

    public int clusterBits() throws IOException { return u32(20); }
    public long clusterSize() throws IOException { return 1L << clusterBits(); }
    public int refcountBits() throws IOException { return u32(4) >= 3 ? 1 << u32(96) : 16; }

    /** Sets the refcount of host cluster {@code index} (must be covered by the first refcount block). */
    public void setRefcount(long index, long value) throws IOException {
        long rtOffset = u64(48);
        long block = u64(rtOffset);
        int bits = refcountBits();
        long bitPos = index * bits;
        if (bits >= 8) {
            long at = block + bitPos / 8;
            for (int i = bits / 8 - 1; i >= 0; i--) { u8(at + i, (int) (value & 0xff)); value >>>= 8; }
        } else {
            long at = block + bitPos / 8;
            f.seek(at);
            int b = f.read();
            int shift = (int) (bitPos % 8);
            int mask = ((1 << bits) - 1) << shift;
            b = (b & ~mask) | (((int) value << shift) & mask);
            u8(at, b);
        }
    }

    @Override
    public void close() throws IOException {
        f.close();
    }
}
