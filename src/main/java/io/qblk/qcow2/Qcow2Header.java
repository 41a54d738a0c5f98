package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The qcow2 header (first cluster): fixed fields, version 3 fields and header extensions, parsed
 * and validated before anything else of the file is used. All numbers are big endian.
 *
 * <pre>
 *  0 magic "QFI\xfb"   4 version     8 backing_file_offset  16 backing_file_size  20 cluster_bits
 * 24 size             32 crypt      36 l1_size  40 l1_table_offset  48 refcount_table_offset
 * 56 refcount_table_clusters  60 nb_snapshots  64 snapshots_offset      (version 2 ends at 72)
 * 72 incompatible  80 compatible  88 autoclear  96 refcount_order  100 header_length  104 compression_type
 * then extensions: { u32 type, u32 length, data padded to 8 } ... type 0 ends the list
 * </pre>
 */
public final class Qcow2Header {
    static final int MAGIC = 0x514649fb;

    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** Whether {@code file} starts with the qcow2 magic "QFI\xfb" (the one format probe of qblk). */
    public static boolean hasMagic(IoBackend file) throws IOException {
        if (file.size() < 4) return false;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(4);
            file.read(0, m);
            return m.get(BE32, 0) == MAGIC;
        }
    }

    /** Whether {@code file} is a qcow2 v3 image with its dirty bit (incompatible feature bit 0) set. */
    public static boolean dirtyBitSet(IoBackend file) throws IOException {
        if (file.size() < 80) return false;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(80);
            file.read(0, h);
            return h.get(BE32, 0) == MAGIC && h.get(BE32, 4) >= 3 && (h.get(BE64, 72) & INCOMPAT_DIRTY) != 0;
        }
    }
    static final int V2_LENGTH = 72;
    static final int V3_MIN_LENGTH = 104;
    /** qemu's limit on the L1 table: 32 MiB. */
    static final long MAX_L1_ENTRIES = (32L << 20) / 8;
    /** qemu's limit on the refcount table: 8 MiB. */
    static final long MAX_REFTABLE_BYTES = 8L << 20;
    /** Host offsets are 56 bits. */
    static final long MAX_HOST_OFFSET = 1L << 56;
    static final long MAX_VIRTUAL_SIZE = 1L << 61;

    static final long INCOMPAT_DIRTY = 1L;
    static final long INCOMPAT_CORRUPT = 1L << 1;
    static final long INCOMPAT_DATA_FILE = 1L << 2;
    static final long INCOMPAT_COMPRESSION = 1L << 3;
    static final long INCOMPAT_EXTL2 = 1L << 4;
    static final long INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
    static final long COMPAT_LAZY_REFCOUNTS = 1L;
    static final long AUTOCLEAR_DATA_FILE_RAW = 1L << 1;

    static final int EXT_END = 0;
    static final int EXT_BACKING_FORMAT = 0xe2792aca;
    static final int EXT_FEATURE_TABLE = 0x6803f857;
    static final int EXT_BITMAPS = 0x23852875;
    static final int EXT_DATA_FILE = 0x44415441;
    static final int EXT_CRYPTO = 0x0537be77;

    int version;
    long backingFileOffset;
    int backingFileSize;
    int clusterBits;
    long size;
    int cryptMethod;
    int l1Size;
    long l1TableOffset;
    long refcountTableOffset;
    int refcountTableClusters;
    int nbSnapshots;
    long snapshotsOffset;
    long incompatible;
    long compatible;
    long autoclear;
    int refcountOrder = 4;
    int headerLength = V2_LENGTH;
    int compressionType;

    String backingFile;
    String backingFormat;
    String dataFile;
    /** The codec of compressed clusters (from {@link #compressionType}). */
    CompressionType compression = CompressionType.ZLIB;
    /** Where the LUKS header lies (full disk encryption header extension); 0 when absent. */
    long cryptoHeaderOffset, cryptoHeaderLength;
    int nbBitmaps;
    long bitmapDirectorySize;
    long bitmapDirectoryOffset;
    /** Feature names from the feature name table: key = type * 64 + bit. */
    final Map<Integer, String> featureNames = new HashMap<>();
    final List<Integer> unknownExtensions = new ArrayList<>();

    int clusterSize() { return 1 << clusterBits; }
    int refcountBits() { return 1 << refcountOrder; }
    int l2Entries() { return clusterSize() / ((incompatible & INCOMPAT_EXTL2) != 0 ? 16 : 8); }

    /** Bytes of the first cluster needed to know the cluster size. */
    static final int PROBE_BYTES = V3_MIN_LENGTH + 8;

    /** Reads the cluster size from the probe bytes, validating magic, version and cluster_bits. */
    static int clusterBitsOf(byte[] probe, long fileSize) throws Qcow2Exception {
        if (fileSize < V2_LENGTH) throw new Qcow2Exception(Qcow2Exception.Kind.NOT_QCOW2, "not a qcow2 image: file is only " + fileSize + " bytes");
        ByteBuffer b = ByteBuffer.wrap(probe).order(ByteOrder.BIG_ENDIAN);
        if (b.getInt(0) != MAGIC) throw new Qcow2Exception(Qcow2Exception.Kind.NOT_QCOW2, "not a qcow2 image: bad magic");
        int version = b.getInt(4);
        if (version != 2 && version != 3) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported qcow2 version " + Integer.toUnsignedString(version) + " (only 2 and 3)");
        int bits = b.getInt(20);
        if (bits < 9 || bits > 21) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad cluster_bits " + bits + " (must be 9..21: 512 bytes to 2 MiB)");
        return bits;
    }

    /** Parses and validates the whole first cluster. Throws before anything is written anywhere. */
    static Qcow2Header parse(byte[] cluster0, long fileSize) throws Qcow2Exception {
        int bits = clusterBitsOf(cluster0, fileSize);
        ByteBuffer b = ByteBuffer.wrap(cluster0).order(ByteOrder.BIG_ENDIAN);
        Qcow2Header h = new Qcow2Header();
        int cs = 1 << bits;
        h.version = b.getInt(4);
        h.backingFileOffset = b.getLong(8);
        h.backingFileSize = b.getInt(16);
        h.clusterBits = bits;
        h.size = b.getLong(24);
        h.cryptMethod = b.getInt(32);
        h.l1Size = b.getInt(36);
        h.l1TableOffset = b.getLong(40);
        h.refcountTableOffset = b.getLong(48);
        h.refcountTableClusters = b.getInt(56);
        h.nbSnapshots = b.getInt(60);
        h.snapshotsOffset = b.getLong(64);
        if (h.version >= 3) {
            if (fileSize < V3_MIN_LENGTH) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "not a qcow2 image: version 3 header truncated");
            h.incompatible = b.getLong(72);
            h.compatible = b.getLong(80);
            h.autoclear = b.getLong(88);
            h.refcountOrder = b.getInt(96);
            h.headerLength = b.getInt(100);
            if (h.headerLength < V3_MIN_LENGTH || h.headerLength % 8 != 0 || h.headerLength > cs)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad header_length " + Integer.toUnsignedString(h.headerLength) + " (must be a multiple of 8, at least 104, within the first cluster)");
            if (h.headerLength > 104) h.compressionType = cluster0[104] & 0xff;
        }
        // Extensions first: the feature name table names unknown features in the errors below.
        h.parseExtensions(b, cs);

        long unknown = h.incompatible & ~INCOMPAT_KNOWN;
        if (unknown != 0) {
            StringBuilder names = new StringBuilder();
            for (int bit = 0; bit < 64; bit++) {
                if ((unknown & (1L << bit)) == 0) continue;
                if (!names.isEmpty()) names.append(", ");
                String n = h.featureNames.get(bit);
                names.append(n != null ? n + " (bit " + bit + ")" : "bit " + bit);
            }
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported incompatible qcow2 feature: " + names);
        }
        h.compression = CompressionType.ofCode(h.compressionType);
        if (h.compression == null)
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported qcow2 feature: compression type " + h.compressionType + " (only zlib and zstd)");
        if (((h.incompatible & INCOMPAT_COMPRESSION) != 0) != (h.compression != CompressionType.ZLIB))
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "compression type " + h.compression.label + " with the compression type feature bit "
                    + ((h.incompatible & INCOMPAT_COMPRESSION) != 0 ? "set (only other types than zlib set it)" : "clear (types other than zlib need it)"));
        if (h.cryptMethod != 0 && h.cryptMethod != 1 && h.cryptMethod != 2)
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported qcow2 feature: encryption method " + Integer.toUnsignedString(h.cryptMethod));
        if ((h.incompatible & INCOMPAT_DATA_FILE) != 0 && h.dataFile == null)
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported qcow2 feature: external data file not named in the header (qemu needs -o data-file= for it)");
        if (h.cryptMethod == 2 && h.cryptoHeaderLength == 0)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "LUKS encryption without its full disk encryption header extension");
        if ((h.incompatible & INCOMPAT_EXTL2) != 0 && h.clusterBits < 14)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "extended L2 entries need a cluster size of at least 16k (subclusters of at least 512 bytes), got " + cs);
        if (h.refcountOrder < 0 || h.refcountOrder > 6)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad refcount_order " + h.refcountOrder + " (must be 0..6)");

        // Virtual size and L1 table.
        if (h.size < 0 || h.size > MAX_VIRTUAL_SIZE) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad virtual size " + Long.toUnsignedString(h.size));
        long bytesPerL1Entry = (long) cs * h.l2Entries();
        long neededL1 = (h.size + bytesPerL1Entry - 1) / bytesPerL1Entry;
        if (h.l1Size < 0 || h.l1Size > MAX_L1_ENTRIES)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad l1_size " + Integer.toUnsignedString(h.l1Size) + " (limit " + MAX_L1_ENTRIES + ")");
        if (h.l1Size < neededL1)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "L1 table too small: l1_size " + h.l1Size + " cannot map virtual size " + h.size + " (needs " + neededL1 + ")");
        if (h.l1Size > 0) checkTable("L1 table", h.l1TableOffset, (long) h.l1Size * 8, cs, fileSize);

        // Refcount table.
        if (h.refcountTableClusters <= 0 || (long) h.refcountTableClusters * cs > MAX_REFTABLE_BYTES)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad refcount_table_clusters " + Integer.toUnsignedString(h.refcountTableClusters));
        checkTable("refcount table", h.refcountTableOffset, (long) h.refcountTableClusters * cs, cs, fileSize);

        // Snapshot table.
        if (h.nbSnapshots < 0 || h.nbSnapshots > 65536)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad nb_snapshots " + Integer.toUnsignedString(h.nbSnapshots));
        if (h.nbSnapshots > 0) checkTable("snapshot table", h.snapshotsOffset, 40L * h.nbSnapshots, cs, fileSize);

        // Tables must not overlap each other or the header.
        if (h.l1Size > 0 && overlaps(h.l1TableOffset, (long) h.l1Size * 8, h.refcountTableOffset, (long) h.refcountTableClusters * cs))
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "L1 table overlaps the refcount table");

        // Backing file name: inside the first cluster, after the header.
        if (h.backingFileOffset != 0) {
            if (h.backingFileSize <= 0 || h.backingFileSize > 1023)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad backing_file_size " + Integer.toUnsignedString(h.backingFileSize) + " (must be 1..1023)");
            if (h.backingFileOffset < h.headerLength || h.backingFileOffset + h.backingFileSize > cs)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "backing file name lies outside the header cluster");
            h.backingFile = new String(cluster0, (int) h.backingFileOffset, h.backingFileSize, StandardCharsets.UTF_8);
        }
        if (h.version == 2 && h.refcountOrder != 4) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "version 2 images need 16-bit refcounts");
        return h;
    }

    private static void checkTable(String what, long offset, long length, int cs, long fileSize) throws Qcow2Exception {
        if (offset <= 0 || offset % cs != 0)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, what + " offset " + offset + " is not a non-zero multiple of the cluster size " + cs);
        if (offset >= MAX_HOST_OFFSET || length > MAX_HOST_OFFSET - offset)
            throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, what + " at " + offset + " extends past the 56-bit offset limit");
        if (offset >= roundUp(fileSize, cs))
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, what + " at " + offset + " starts past the end of the file (" + fileSize + " bytes)");
    }

    static boolean overlaps(long a, long alen, long b, long blen) {
        return a < b + blen && b < a + alen;
    }

    static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

    private void parseExtensions(ByteBuffer b, int cs) throws Qcow2Exception {
        int pos = headerLength;
        boolean seenFormat = false, seenFeatures = false, seenBitmaps = false, seenData = false, seenCrypto = false;
        while (true) {
            if (pos + 8 > cs) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "header extensions run past the first cluster");
            int type = b.getInt(pos);
            long len = Integer.toUnsignedLong(b.getInt(pos + 4));
            if (type == EXT_END) break;
            int data = pos + 8;
            if (len > cs - data) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, String.format("header extension 0x%08x (length %d) runs past the first cluster", type, len));
            int n = (int) len;
            switch (type) {
                case EXT_BACKING_FORMAT -> {
                    if (seenFormat) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "duplicate backing format header extension");
                    seenFormat = true;
                    backingFormat = new String(b.array(), data, n, StandardCharsets.UTF_8);
                }
                case EXT_FEATURE_TABLE -> {
                    if (seenFeatures) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "duplicate feature name table");
                    seenFeatures = true;
                    if (n % 48 != 0) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "feature name table length " + n + " is not a multiple of 48");
                    for (int e = data; e < data + n; e += 48) {
                        int ftype = b.get(e) & 0xff, bit = b.get(e + 1) & 0xff;
                        int end = e + 2;
                        while (end < e + 48 && b.get(end) != 0) end++;
                        if (bit < 64 && ftype <= 2) featureNames.put(ftype * 64 + bit, new String(b.array(), e + 2, end - e - 2, StandardCharsets.UTF_8));
                    }
                }
                case EXT_BITMAPS -> {
                    if (seenBitmaps) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "duplicate bitmaps header extension");
                    seenBitmaps = true;
                    bitmapsExtension = pos;
                    // Without autoclear bit 0 the extension is invalid and ignored (as qemu does): a
                    // program lacking bitmap support wrote the image, or a bitmap edit was cut short.
                    if ((autoclear & 1) == 0) break;
                    if (n < 24) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bitmaps header extension too short (" + n + " bytes)");
                    nbBitmaps = b.getInt(data);
                    bitmapDirectorySize = b.getLong(data + 8);
                    bitmapDirectoryOffset = b.getLong(data + 16);
                    if (nbBitmaps < 1 || nbBitmaps > 65535 || bitmapDirectoryOffset % cs != 0 || bitmapDirectoryOffset <= 0
                            || bitmapDirectorySize < 0 || bitmapDirectorySize > (64L << 20))
                        throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad bitmaps header extension");
                }
                case EXT_DATA_FILE -> {
                    if (seenData) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "duplicate external data file header extension");
                    seenData = true;
                    dataFile = new String(b.array(), data, n, StandardCharsets.UTF_8);
                }
                case EXT_CRYPTO -> {
                    if (seenCrypto) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "duplicate encryption header extension");
                    seenCrypto = true;
                    if (cryptMethod == 0) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported qcow2 feature: full disk encryption header present");
                    if (n < 16) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "full disk encryption header extension too short (" + n + " bytes)");
                    cryptoHeaderOffset = b.getLong(data);
                    cryptoHeaderLength = b.getLong(data + 8);
                    if (cryptoHeaderOffset <= 0 || cryptoHeaderOffset % cs != 0 || cryptoHeaderLength <= 0
                            || cryptoHeaderOffset >= MAX_HOST_OFFSET || cryptoHeaderLength > MAX_HOST_OFFSET - cryptoHeaderOffset)
                        throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bad full disk encryption header extension (offset " + cryptoHeaderOffset
                                + ", length " + cryptoHeaderLength + ")");
                }
                default -> unknownExtensions.add(type);
            }
            long next = data + ((len + 7) & ~7L);
            if (next > cs) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "header extensions run past the first cluster");
            pos = (int) next;
        }
        extensionsEnd = pos + 8;
    }

    /** End of the extension area (after the terminating entry). */
    int extensionsEnd;
    /** Where the bitmaps extension's 8-byte type/length header starts, or -1 when there is none. */
    int bitmapsExtension = -1;

    /**
     * Why the engine cannot read or write this image's guest data (a valid image using a feature
     * qblk only describes), or null. Such an image opens only to be described (info).
     */
    String ioRefusal() {
        if ((incompatible & INCOMPAT_DATA_FILE) != 0 || dataFile != null)
            return "unsupported qcow2 feature: external data file" + (dataFile != null ? " (" + dataFile + ")" : "");
        if (cryptMethod != 0) return "unsupported qcow2 feature: encryption (" + (cryptMethod == 1 ? "AES" : "LUKS") + ")";
        return null;
    }

    /** qemu's refusal to open an encrypted image without its key (qblk takes no keys). */
    static String keyRequired(String filename) {
        return "Could not open '" + filename + "': Parameter 'encrypt.key-secret' is required for cipher";
    }

    /** The data clusters live in an external data file (L2 entries give offsets there; this file does not count them). */
    boolean hasDataFile() {
        return (incompatible & INCOMPAT_DATA_FILE) != 0;
    }

    /** The 24 bytes of feature fields at offset 72 (version 3). */
    byte[] featureBytes() {
        ByteBuffer b = ByteBuffer.allocate(24).order(ByteOrder.BIG_ENDIAN);
        b.putLong(incompatible).putLong(compatible).putLong(autoclear);
        return b.array();
    }

    /** The 12 bytes at offset 48: refcount_table_offset and refcount_table_clusters. */
    byte[] refcountTableBytes() {
        ByteBuffer b = ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN);
        b.putLong(refcountTableOffset).putInt(refcountTableClusters);
        return b.array();
    }

    /**
     * Serializes a fresh header for create: the backing format extension (when {@link #backingFormat}
     * is set), the feature name table (version 3), the end marker, then the backing file name (when
     * {@link #backingFile} is set), in qemu's order.
     */
    byte[] serializeNew(int cs) {
        ByteBuffer b = ByteBuffer.allocate(cs).order(ByteOrder.BIG_ENDIAN);
        b.putInt(MAGIC).putInt(version).putLong(0).putInt(0).putInt(clusterBits).putLong(size).putInt(0)
                .putInt(l1Size).putLong(l1TableOffset).putLong(refcountTableOffset).putInt(refcountTableClusters)
                .putInt(0).putLong(0);
        if (version >= 3) {
            headerLength = 112;
            b.putLong(incompatible).putLong(compatible).putLong(autoclear).putInt(refcountOrder).putInt(headerLength);
            b.put((byte) compression.code);
            b.position(headerLength);
        }
        if (backingFormat != null) {
            byte[] f = backingFormat.getBytes(StandardCharsets.UTF_8);
            b.putInt(EXT_BACKING_FORMAT).putInt(f.length).put(f);
            b.position(b.position() + (8 - f.length % 8) % 8);
        }
        if (version >= 3 && cs > 4096) {
            // feature name table, so tools can name the bits (qemu-img writes none with clusters of 4k and less)
            String[][] feats = {{"0", "0", "dirty bit"}, {"0", "1", "corrupt bit"}, {"0", "2", "external data file"},
                    {"0", "3", "compression type"}, {"0", "4", "extended L2 entries"}, {"1", "0", "lazy refcounts"},
                    {"2", "0", "bitmaps"}, {"2", "1", "raw external data"}};
            b.putInt(EXT_FEATURE_TABLE).putInt(feats.length * 48);
            for (String[] f : feats) {
                int start = b.position();
                b.put((byte) Integer.parseInt(f[0])).put((byte) Integer.parseInt(f[1]));
                b.put(f[2].getBytes(StandardCharsets.US_ASCII));
                b.position(start + 48);
            }
        }
        b.putInt(EXT_END).putInt(0);
        if (backingFile != null) {
            byte[] name = backingFile.getBytes(StandardCharsets.UTF_8);
            if (name.length > b.remaining()) throw new IllegalArgumentException("backing file name does not fit in the header cluster");
            int at = b.position();
            b.put(name);
            b.putLong(8, at).putInt(16, name.length);
        }
        return b.array();
    }
}
