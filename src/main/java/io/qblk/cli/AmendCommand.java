package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.HeaderRewrite;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.util.Sizes;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code qblk amend}: changes creation options of an existing qcow2 image, like {@code qemu-img amend}:
 * {@code compat=0.10|1.1} (a downgrade first turns zero clusters into unallocated clusters, or into
 * written zeroes over a backing file, and flushes), {@code lazy_refcounts=on|off}, {@code size}
 * (growing; shrinking is {@code resize --shrink}), {@code refcount_bits=1..64} (a new refcount structure
 * past the end of the file, then the header switched to it: docs/ordering.md R15). Images with internal snapshots are amended
 * too, except a downgrade (qblk would have to expand the snapshots' zero clusters as well) and an
 * upgrade of a snapshot table without version 3 fields. The header is rewritten in one sector
 * ({@link HeaderRewrite}, docs/ordering.md R11).
 */
@Command(name = "amend", mixinStandardHelpOptions = true,
        description = "Change options of a qcow2 image (compat, lazy_refcounts, size, refcount_bits), like qemu-img amend.")
public class AmendCommand implements Callable<Integer> {
    @Option(names = "-f", paramLabel = "FMT", description = "format of FILE: qcow2 (probed when absent)")
    String format;

    @Option(names = "-o", paramLabel = "OPTIONS", description = "compat=0.10|1.1, lazy_refcounts=on|off, size=SIZE, refcount_bits=1|2|4|...|64")
    List<String> options = new ArrayList<>();

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(names = "-p", description = "show progress (accepted; amend of these options is quick)")
    boolean progress;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        if (options.isEmpty()) throw new IllegalArgumentException("Must specify options (-o)");
        Map<String, String> opts = parse(String.join(",", options));
        ImageFormat fmt = ImageFormat.resolve(format, file);
        if (fmt != ImageFormat.QCOW2) throw new IllegalArgumentException("Format driver '" + fmt.name().toLowerCase(java.util.Locale.ROOT) + "' does not support option amendment");
        try (PosixFileBackend f = PosixFileBackend.open(file, false)) { // the write lock for every step
            HeaderRewrite h = HeaderRewrite.of(f);
            int version = h.version();
            if (opts.containsKey("compat")) {
                version = switch (opts.get("compat")) {
                    case "0.10", "v2" -> 2;
                    case "1.1", "v3" -> 3;
                    default -> throw new IllegalArgumentException("Unknown compatibility level " + opts.get("compat"));
                };
            }
            boolean lazy = opts.containsKey("lazy_refcounts") ? CreateCommand.onOff("lazy_refcounts", opts.get("lazy_refcounts")) : h.lazyRefcounts() && version >= 3;
            if (lazy && version < 3)
                throw new IllegalArgumentException("Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
            int bits = h.refcountBits();
            if (opts.containsKey("refcount_bits")) {
                long b = parseNumber("refcount_bits", opts.get("refcount_bits"));
                Qcow2Image.checkRefcountWidth(b, version);
                bits = (int) b;
            }
            if (version < 3 && bits != 16) throw new IllegalArgumentException("compat=0.10 requires refcount_bits=16");
            if (version < 3 && h.bitmaps() > 0) throw new IllegalArgumentException("Cannot downgrade an image with bitmaps");
            // qemu also downgrades images with internal snapshots (expanding their zero clusters too);
            // qblk expands only the active image's, so it refuses that case.
            if (version < 3 && h.version() >= 3 && h.snapshots() > 0)
                throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, file + ": downgrading an image with internal snapshots is not supported by qblk");
            // The engine's write-open repairs a dirty image (lazy refcounts) first; a downgrade expands zero clusters.
            boolean newWidth = bits != h.refcountBits();
            try (Qcow2Image img = Qcow2Image.open(f, OpenOptions.defaults(), file)) {
                if (newWidth) img.checkRefcountsFit(bits); // before anything changes (qemu's message)
                if (version < 3 && h.version() >= 3) expandZeroClusters(img);
                // version 3 wants every snapshot entry's extra data to hold the VM state size and the disk size
                if (version >= 3 && h.version() < 3 && img.snapshots().stream().anyMatch(sn -> sn.icount() < 0))
                    throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, file + ": upgrading an image whose snapshot table lacks version 3 fields is not supported by qblk");
                if (opts.containsKey("size")) {
                    long size = Sizes.parse(opts.get("size"));
                    if (size < img.virtualSize()) throw new IllegalArgumentException("Cannot shrink the image with amend (use 'qblk resize --shrink')");
                    img.flush();
                    if (size > img.virtualSize()) img.resize(size); // flushes first; the image is done after it
                } else {
                    img.flush();
                }
            }
            // version 2 has no refcount_order field: a downgrade changes the width (to 16) first, an upgrade after
            if (newWidth && version < 3) changeRefcountWidth(f, bits);
            HeaderRewrite.of(f).version(version).lazyRefcounts(lazy).write();
            if (newWidth && version >= 3) changeRefcountWidth(f, bits);
        }
        return 0;
    }

    /** A fresh open whose only change is the new refcount width (docs/ordering.md R15). */
    private void changeRefcountWidth(PosixFileBackend f, int bits) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(f, OpenOptions.defaults(), file)) {
            img.changeRefcountWidth(bits);
        }
    }

    /** Version 2 has no zero flag: zero clusters become unallocated (no backing file) or written zeroes. */
    private static void expandZeroClusters(Qcow2Image img) throws IOException {
        boolean hasBacking = img.backingSize() > 0 || img.info().backingFilename() != null;
        List<MapEntry> zeroes = new ArrayList<>();
        for (MapEntry m : img.map(0, img.virtualSize())) if (m.depth() == 0 && m.present() && m.zero()) zeroes.add(m);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment zero = a.allocate(1 << 20, 4096);
            for (MapEntry m : zeroes) {
                if (!hasBacking) {
                    img.deallocate(m.start(), m.length());
                    continue;
                }
                for (long off = m.start(); off < m.start() + m.length(); off += zero.byteSize())
                    img.write(off, zero.asSlice(0, Math.min(zero.byteSize(), m.start() + m.length() - off)));
            }
        }
        img.flush();
    }

    private static Map<String, String> parse(String text) throws Qcow2Exception {
        Map<String, String> m = new LinkedHashMap<>();
        for (String part : text.split(",")) {
            if (part.isBlank()) continue;
            int eq = part.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("Invalid parameter '" + part + "'");
            String k = part.substring(0, eq).trim(), v = part.substring(eq + 1).trim();
            switch (k) {
                case "compat", "lazy_refcounts", "refcount_bits", "size" -> { }
                case "cluster_size", "preallocation", "extended_l2", "compression_type", "encryption", "encrypt.format", "data_file_raw" ->
                        throw new IllegalArgumentException("Invalid parameter '" + k + "': this option is only supported for image creation");
                case "backing_file", "backing_fmt" -> throw new IllegalArgumentException("Cannot amend the backing file; use 'qblk rebase' instead");
                case "data_file" -> throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "external data files are not supported by qblk");
                default -> throw new IllegalArgumentException("Invalid parameter '" + k + "'");
            }
            m.put(k, v);
        }
        return m;
    }

    /**
     * A number option as qemu's option parser reads it (strtoull, base 0: decimal, 0x hex, 0 octal,
     * leading blanks and a sign allowed, nothing after the digits; a minus wraps around).
     */
    static long parseNumber(String key, String v) {
        String t = v.stripLeading();
        boolean neg = false;
        if (t.startsWith("+") || t.startsWith("-")) {
            neg = t.charAt(0) == '-';
            t = t.substring(1);
        }
        int radix = 10;
        if (t.length() > 1 && (t.startsWith("0x") || t.startsWith("0X"))) {
            radix = 16;
            t = t.substring(2);
        } else if (t.length() > 1 && t.startsWith("0")) {
            radix = 8;
            t = t.substring(1);
        }
        try {
            if (t.isEmpty() || !Character.isLetterOrDigit(t.charAt(0))) throw new NumberFormatException();
            long n = Long.parseUnsignedLong(t, radix);
            return neg ? -n : n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("Parameter '" + key + "' expects a number");
        }
    }
}
