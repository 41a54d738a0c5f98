package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Rewrites a qcow2 header's backing file name and format, version and feature bits (rebase, amend)
 * crash-safely (docs/ordering.md R11): the whole new header - fields, the header extensions that are
 * kept, the backing file name - is built to fit in the first 512-byte sector and written there in
 * one write, then synced. A sector is written whole or not at all, so a crash leaves the old header
 * (whose bytes past the sector are untouched) or the new one. The optional feature name table is
 * left out when it does not fit; a header that still does not fit is refused.
 *
 * <p>The caller holds the image's write lock and has flushed every change the new header relies on
 * (copied data, expanded zero clusters) before calling.
 */
public final class HeaderRewrite {
    static final int SECTOR = 512;

    private final IoBackend file;
    private final Qcow2Header h;
    private final byte[] cluster0;

    private String backingFile;
    private String backingFormat;
    private int version;
    private long compatible;
    private long incompatible;

    private HeaderRewrite(IoBackend file, Qcow2Header h, byte[] cluster0) {
        this.file = file;
        this.h = h;
        this.cluster0 = cluster0;
        this.backingFile = h.backingFile;
        this.backingFormat = h.backingFormat;
        this.version = h.version;
        this.compatible = h.compatible;
        this.incompatible = h.incompatible;
    }

    /** Reads and parses the header of {@code file} (a qcow2 image the caller has locked for writing). */
    public static HeaderRewrite of(IoBackend file) throws IOException {
        long fsize = file.size();
        byte[] probe = FileReads.bytes(file, 0, (int) Math.min(Qcow2Header.PROBE_BYTES, Math.max(fsize, 0)));
        if (probe.length < Qcow2Header.PROBE_BYTES) probe = Arrays.copyOf(probe, Qcow2Header.PROBE_BYTES);
        int bits = Qcow2Header.clusterBitsOf(probe, fsize);
        byte[] c0 = FileReads.bytes(file, 0, 1 << bits);
        return new HeaderRewrite(file, Qcow2Header.parse(c0, fsize), c0);
    }

    public int version() { return version; }

    public int refcountBits() { return h.refcountBits(); }

    public int snapshots() { return h.nbSnapshots; }

    public int bitmaps() { return h.nbBitmaps; }

    public boolean lazyRefcounts() { return (compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0; }

    public String backingFile() { return backingFile; }

    public String backingFormat() { return backingFormat; }

    /** The new backing file name and format; null, null removes the backing file. */
    public HeaderRewrite backing(String name, String format) {
        if (name != null && (name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length > 1023))
            throw new IllegalArgumentException("backing file name must be 1 to 1023 bytes");
        this.backingFile = name;
        this.backingFormat = name == null ? null : format;
        return this;
    }

    /** Version 2 (compat 0.10) or 3 (compat 1.1); a downgrade is the caller's to make valid first (no zero clusters, 16-bit refcounts). */
    public HeaderRewrite version(int v) {
        if (v != 2 && v != 3) throw new IllegalArgumentException("version must be 2 or 3");
        if (v == 2 && h.refcountOrder != 4) throw new IllegalArgumentException("compat=0.10 requires refcount_bits=16");
        this.version = v;
        return this;
    }

    public HeaderRewrite lazyRefcounts(boolean on) {
        compatible = on ? compatible | Qcow2Header.COMPAT_LAZY_REFCOUNTS : compatible & ~Qcow2Header.COMPAT_LAZY_REFCOUNTS;
        return this;
    }

    /** Builds the new first sector (package-private for tests). */
    byte[] sector() throws Qcow2Exception {
        if (version == 2 && (lazyRefcounts() || incompatible != 0 || h.nbBitmaps > 0))
            throw new IllegalArgumentException("compat=0.10 cannot hold lazy refcounts, incompatible features or bitmaps");
        List<byte[]> kept = new ArrayList<>(); // extensions other than backing format and feature names, raw
        byte[] features = null;
        ByteBuffer old = ByteBuffer.wrap(cluster0).order(ByteOrder.BIG_ENDIAN);
        for (int pos = h.headerLength; ; ) {
            int type = old.getInt(pos);
            int len = old.getInt(pos + 4);
            if (type == Qcow2Header.EXT_END) break;
            int total = 8 + ((len + 7) & ~7);
            byte[] ext = Arrays.copyOfRange(cluster0, pos, pos + total);
            if (type == Qcow2Header.EXT_FEATURE_TABLE) features = ext;
            else if (type != Qcow2Header.EXT_BACKING_FORMAT) kept.add(ext);
            pos += total;
        }
        byte[] out = build(kept, features);
        if (out == null && features != null) out = build(kept, null); // the feature name table is optional
        if (out == null)
            throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, "the new header (with backing file name of "
                    + (backingFile == null ? 0 : backingFile.length()) + " bytes) does not fit in the first 512-byte sector, "
                    + "the one write a power loss cannot tear; refusing to rewrite it");
        return out;
    }

    /** The sector with these extensions, or null when it does not fit. */
    private byte[] build(List<byte[]> kept, byte[] features) {
        ByteBuffer b = ByteBuffer.allocate(cluster0.length).order(ByteOrder.BIG_ENDIAN);
        b.put(cluster0, 0, Qcow2Header.V2_LENGTH);
        b.putInt(4, version);
        b.putLong(8, 0).putInt(16, 0);
        int headerLength;
        if (version >= 3) {
            headerLength = h.version >= 3 ? h.headerLength : 112;
            if (h.version >= 3) b.put(Qcow2Header.V2_LENGTH, cluster0, Qcow2Header.V2_LENGTH, headerLength - Qcow2Header.V2_LENGTH);
            b.putLong(72, incompatible).putLong(80, compatible).putLong(88, h.version >= 3 ? h.autoclear : 0)
                    .putInt(96, h.refcountOrder).putInt(100, headerLength);
        } else {
            headerLength = Qcow2Header.V2_LENGTH;
        }
        b.position(headerLength);
        List<byte[]> exts = new ArrayList<>();
        if (backingFormat != null) {
            byte[] f = backingFormat.getBytes(StandardCharsets.UTF_8);
            ByteBuffer e = ByteBuffer.allocate(8 + ((f.length + 7) & ~7)).order(ByteOrder.BIG_ENDIAN);
            e.putInt(Qcow2Header.EXT_BACKING_FORMAT).putInt(f.length).put(f);
            exts.add(e.array());
        }
        exts.addAll(kept);
        if (features != null) exts.add(features);
        byte[] name = backingFile == null ? new byte[0] : backingFile.getBytes(StandardCharsets.UTF_8);
        int total = headerLength + 8 + name.length;
        for (byte[] e : exts) total += e.length;
        if (total > SECTOR) return null;
        for (byte[] e : exts) b.put(e);
        b.putInt(Qcow2Header.EXT_END).putInt(0);
        if (name.length > 0) {
            int at = b.position();
            b.put(name);
            b.putLong(8, at).putInt(16, name.length);
        }
        return Arrays.copyOf(b.array(), SECTOR);
    }

    /** Writes the new first sector in one write and syncs it (R11). */
    public void write() throws IOException {
        byte[] s = sector();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment seg = a.allocate(SECTOR, 4096);
            seg.copyFrom(MemorySegment.ofArray(s));
            file.write(0, seg);
            file.datasync();
        }
    }
}
