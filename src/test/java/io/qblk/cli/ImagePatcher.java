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

    /** Bytes to write at {@code offset}. */
    public record Patch(long offset, byte[] bytes) {}

    /** Refcount-structure damages {@link #refcountDamage} knows (check -r all must rebuild from each). */
    public static final java.util.List<String> DAMAGES = java.util.List.of("past-eof", "overlap-l2", "zeroed");

    /**
     * The patch that breaks the refcount structure of {@code image} (its bytes, whole): refcount
     * table entry 0 pointing past the end of the file ("past-eof", 0x7fff0000 as in issue 16), at the
     * first L2 table ("overlap-l2"), or the first refcount table cluster zeroed ("zeroed").
     */
    public static Patch refcountDamage(java.nio.ByteBuffer image, String damage) {
        int cs = 1 << image.getInt(20);
        long rt = image.getLong(48), l1 = image.getLong(40);
        int l1Size = image.getInt(36);
        long l2 = 0;
        for (int i = 0; i < l1Size && l2 == 0; i++) l2 = image.getLong((int) (l1 + 8L * i)) & 0x00fffffffffffe00L;
        long pastEof = Math.max(0x7fff0000L / cs * cs, ((long) image.limit() / cs + 16) * cs);
        long entry0 = switch (damage) {
            case "past-eof" -> pastEof;
            case "overlap-l2" -> l2 != 0 ? l2 : pastEof;
            case "zeroed" -> 0;
            default -> throw new IllegalArgumentException(damage + " is none of " + DAMAGES);
        };
        byte[] bytes = new byte[damage.equals("zeroed") ? cs : 8];
        java.nio.ByteBuffer.wrap(bytes).putLong(0, entry0);
        return new Patch(rt, bytes);
    }

    /** Applies {@link #refcountDamage} to this file. */
    public void damageRefcounts(Path file, String damage) throws IOException {
        Patch p = refcountDamage(java.nio.ByteBuffer.wrap(java.nio.file.Files.readAllBytes(file)), damage);
        f.seek(p.offset());
        f.write(p.bytes());
    }

    @Override
    public void close() throws IOException {
        f.close();
    }
}
