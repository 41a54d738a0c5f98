package io.qblk.qcow2;

import com.github.luben.zstd.Zstd;
import java.util.zip.DataFormatException;
import java.util.zip.Deflater;
import java.util.zip.Inflater;

/**
 * The codecs of compressed clusters (header field compression_type, byte 104): zlib (raw deflate,
 * no zlib header, type 0) and zstd (one or more zstd frames, type 1, needs incompatible feature bit
 * 3). Both decode exactly one cluster and ignore what follows the compressed stream in its last
 * 512-byte sector; both encode a whole cluster or report that compressing it does not save space.
 * zstd comes from zstd-jni, the JNI binding of the reference C library (choice and figures:
 * docs/qcow2-engine.md, "Compression").
 */
public enum CompressionType {
    ZLIB(0, "zlib"),
    ZSTD(1, "zstd");

    /** The header's compression_type value. */
    public final int code;
    /** qemu's name, as in {@code -o compression_type=} and in info's {@code compression-type}. */
    public final String label;

    CompressionType(int code, String label) {
        this.code = code;
        this.label = label;
    }

    /** The type of header value {@code code}, or null when qblk does not know it. */
    static CompressionType ofCode(int code) {
        for (CompressionType t : values()) if (t.code == code) return t;
        return null;
    }

    /** The type named {@code label} (qemu's option value). */
    public static CompressionType parse(String label) {
        for (CompressionType t : values()) if (t.label.equals(label)) return t;
        throw new IllegalArgumentException("compression_type must be zlib or zstd: " + label);
    }

    /** qemu's zstd level (its default, 3 is zstd's own default as well). */
    private static final int ZSTD_LEVEL = 3;

    /**
     * Decodes {@code in[0..inLen)} into all of {@code out}. Throws a CORRUPT {@link Qcow2Exception}
     * (message without the file name; {@code where} says which cluster) when the data does not
     * decode or decodes to fewer bytes than {@code out} holds.
     */
    void decompress(byte[] in, int inLen, byte[] out, String where) throws Qcow2Exception {
        int got = switch (this) {
            case ZLIB -> inflate(in, inLen, out, where);
            case ZSTD -> unzstd(in, inLen, out, where);
        };
        if (got < out.length)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, where + " decompresses to only " + got + " bytes");
    }

    private static int inflate(byte[] in, int inLen, byte[] out, String where) throws Qcow2Exception {
        Inflater inf = new Inflater(true);
        try {
            inf.setInput(in, 0, inLen);
            int pos = 0;
            while (pos < out.length) {
                int n = inf.inflate(out, pos, out.length - pos);
                pos += n;
                if (n == 0 && (inf.finished() || inf.needsInput() || inf.needsDictionary())) break;
            }
            return pos;
        } catch (DataFormatException ex) {
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, where + " is not valid deflate data: " + ex.getMessage());
        } finally {
            inf.end();
        }
    }

    private static int unzstd(byte[] in, int inLen, byte[] out, String where) throws Qcow2Exception {
        loaded();
        int pos = 0, done = 0;
        try {
            // Frame by frame until the cluster is full: a writer may split it into several frames, and
            // the bytes after the last frame (rest of its sector) are not zstd data.
            while (done < out.length && pos < inLen) {
                long frame = Zstd.findFrameCompressedSize(in, pos, inLen - pos);
                if (Zstd.isError(frame)) throw zstdError(where, Zstd.getErrorName(frame));
                long n = Zstd.decompressByteArray(out, done, out.length - done, in, pos, (int) frame);
                if (Zstd.isError(n)) throw zstdError(where, Zstd.getErrorName(n));
                if (n == 0 && frame == 0) break;
                pos += (int) frame;
                done += (int) n;
            }
            return done;
        } catch (RuntimeException ex) { // zstd-jni reports some errors as ZstdException
            throw zstdError(where, ex.getMessage());
        }
    }

    private static Qcow2Exception zstdError(String where, String why) {
        return new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, where + " is not valid zstd data: " + why);
    }

    /**
     * Encodes the cluster {@code in} into {@code out} (at least {@code in.length} bytes) and returns
     * the compressed length, or -1 when the result would not save at least one 512-byte sector (the
     * caller then writes the cluster uncompressed, as qemu does when compressing does not help).
     */
    int compress(byte[] in, byte[] out) throws Qcow2Exception {
        int limit = in.length - 512;
        if (limit <= 0) return -1;
        return switch (this) {
            case ZLIB -> deflate(in, out, limit);
            case ZSTD -> {
                loaded();
                long n;
                try {
                    n = Zstd.compressByteArray(out, 0, limit, in, 0, in.length, ZSTD_LEVEL);
                } catch (RuntimeException ex) { // "Destination buffer is too small": does not save
                    yield -1;
                }
                yield Zstd.isError(n) ? -1 : (int) n;
            }
        };
    }

    /**
     * qemu inflates with a 4 KiB window (raw deflate, window bits 12), so no back-reference may
     * reach further than that; java.util.zip cannot narrow its 32 KiB window, so each 4 KiB piece
     * ends with a full flush, after which nothing refers to earlier data.
     */
    private static final int ZLIB_WINDOW = 4096;

    private static int deflate(byte[] in, byte[] out, int limit) {
        Deflater d = new Deflater(Deflater.DEFAULT_COMPRESSION, true);
        try {
            int n = 0;
            for (int at = 0; at < in.length; at += ZLIB_WINDOW) {
                int end = Math.min(in.length, at + ZLIB_WINDOW);
                d.setInput(in, at, end - at);
                if (end < in.length) {
                    n += d.deflate(out, n, limit - n, Deflater.FULL_FLUSH);
                    if (n >= limit) return -1; // output full before the flush completed: does not save
                } else {
                    d.finish();
                    while (!d.finished()) {
                        if (n >= limit) return -1;
                        n += d.deflate(out, n, limit - n);
                    }
                }
            }
            return n;
        } finally {
            d.end();
        }
    }

    /** Loads the native zstd library once; a host where it cannot load gets a clear refusal. */
    private static void loaded() throws Qcow2Exception {
        String why = ZstdLoad.FAILURE;
        if (why != null) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "zstd compressed clusters need the zstd library, which failed to load: " + why);
    }

    private static final class ZstdLoad {
        static final String FAILURE = load();

        private static String load() {
            try {
                Zstd.defaultCompressionLevel();
                return null;
            } catch (LinkageError | RuntimeException e) {
                return e.toString();
            }
        }
    }
}
