package io.qblk.cli;

import io.qblk.util.Sizes;
import io.qblk.qcow2.CompressionType;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Preallocation;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code qblk create}: a new qcow2 (or raw) image, shaped like {@code qemu-img create}. */
@Command(name = "create", mixinStandardHelpOptions = true, description = "Create a new qcow2 or raw image (refuses to overwrite an existing file).")
public class CreateCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 (default) or raw")
    String format = "qcow2";

    @Option(names = "-o", paramLabel = "OPTIONS", description = "comma-separated: compat=0.10|1.1, cluster_size=512..2M, "
            + "refcount_bits=1..64, preallocation=off|metadata|falloc|full, lazy_refcounts=on|off, extended_l2=on|off")
    java.util.List<String> options = new java.util.ArrayList<>();

    @Option(names = "-q", description = "quiet: no 'Formatting' line")
    boolean quiet;

    @Option(names = "-b", paramLabel = "BACKING", description = "make an overlay of BACKING (stored as given; a relative name is relative to FILE's directory)")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "format of BACKING: qcow2 or raw (required with -b)")
    String backingFormat;

    @Option(names = "-u", description = "unsafe: do not open BACKING (SIZE is then required)")
    boolean unsafe;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Parameters(index = "1", paramLabel = "SIZE", arity = "0..1",
            description = "virtual size, suffixes k/M/G/T; a multiple of 512 (with -b: the backing file's size when absent)")
    String sizeText;

    @Override
    public Integer call() throws IOException {
        ImageFormat fmt = format == null ? ImageFormat.QCOW2 : ImageFormat.parse(format);
        if (!fmt.hasFile()) throw new IllegalArgumentException("-f null: the null format has no file to create");
        if (backing != null && fmt == ImageFormat.RAW) throw new IllegalArgumentException("raw images have no backing file (-b needs -f qcow2)");
        if (backing != null && backingFormat == null) throw new IllegalArgumentException(file + ": backing file specified without backing format (-F qcow2|raw)");
        if (backing == null && (backingFormat != null || unsafe)) throw new IllegalArgumentException("-F and -u need -b BACKING");
        if (backingFormat != null && !ImageFormat.parse(backingFormat).hasFile())
            throw new IllegalArgumentException("-F " + backingFormat + ": a backing file is qcow2 or raw");
        if (sizeText == null && (backing == null || unsafe)) throw new IllegalArgumentException(file + ": image creation needs a SIZE (or -b BACKING to take its size)");
        Map<String, String> opts = parseOptions(String.join(",", options));
        if (Files.exists(file)) throw new FileAlreadyExistsException(file.toString());
        Long backingSize = backing != null && !unsafe ? backingSize(file, backing, backingFormat) : null;
        long size = sizeText != null ? Sizes.parse(sizeText) : backingSize;
        if (size % 512 != 0) throw new IllegalArgumentException("size " + size + " is not a multiple of 512");
        if (fmt == ImageFormat.RAW) return createRaw(size, opts);

        CreateOptions co = qcow2Options(size, opts);
        if (backing != null) co = co.withBacking(backing, backingFormat);
        StringBuilder line = new StringBuilder("Formatting '").append(file).append("', fmt=qcow2 cluster_size=")
                .append(co.clusterSize()).append(" extended_l2=").append(co.extendedL2() ? "on" : "off");
        if (opts.containsKey("preallocation")) line.append(" preallocation=").append(opts.get("preallocation"));
        line.append(" compression_type=").append(co.compression().label).append(" size=").append(size);
        if (opts.containsKey("compat")) line.append(" compat=").append(co.version() == 2 ? "0.10" : "1.1");
        if (backing != null) line.append(" backing_file=").append(backing).append(" backing_fmt=").append(backingFormat);
        line.append(" lazy_refcounts=").append(co.lazyRefcounts() ? "on" : "off")
                .append(" refcount_bits=").append(co.refcountBits());
        if (!quiet) spec.commandLine().getOut().println(line);
        Qcow2Image.create(file, co);
        return 0;
    }

    /**
     * The virtual size of {@code backing} as the overlay {@code image} will name it (a relative name is
     * relative to the image's directory), opened read-only as {@code backingFormat}: an overlay is only
     * created over a backing file that opens. The error names both files.
     */
    static long backingSize(Path image, String backing, String backingFormat) throws IOException {
        Path resolved = Path.of(backing).isAbsolute() ? Path.of(backing) : image.toAbsolutePath().getParent().resolve(backing);
        try (SourceImage b = SourceImage.open(resolved, backingFormat)) {
            return b.format == ImageFormat.RAW ? Files.size(resolved) : b.size;
        } catch (IOException | RuntimeException e) {
            throw new IOException(image + ": could not open backing file " + backing + ": " + CliErrors.message(e), e);
        }
    }

    private int createRaw(long size, Map<String, String> opts) throws IOException {
        String prealloc = "off";
        for (var e : opts.entrySet()) {
            if (!e.getKey().equals("preallocation")) throw new IllegalArgumentException("invalid option '" + e.getKey() + "' for raw");
            prealloc = e.getValue();
            if (!prealloc.equals("off") && !prealloc.equals("falloc") && !prealloc.equals("full"))
                throw new IllegalArgumentException("preallocation for raw must be off, falloc or full, not '" + prealloc + "'");
        }
        if (!quiet) spec.commandLine().getOut().println("Formatting '" + file + "', fmt=raw size=" + size
                + (opts.containsKey("preallocation") ? " preallocation=" + prealloc : ""));
        io.qblk.target.RawTarget.create(file, size, io.qblk.qcow2.Preallocation.parse(prealloc));
        return 0;
    }

    /** "a=b,c=d" into an ordered map; an unknown or repeated key is an error. */
    static Map<String, String> parseOptions(String text) {
        Map<String, String> m = new LinkedHashMap<>();
        if (text == null || text.isBlank()) return m;
        for (String part : text.split(",")) {
            if (part.isBlank()) continue;
            int eq = part.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("invalid option '" + part + "' (expected key=value)");
            String k = part.substring(0, eq).trim(), v = part.substring(eq + 1).trim();
            switch (k) {
                case "compat", "cluster_size", "refcount_bits", "preallocation", "lazy_refcounts", "compression_type", "extended_l2" -> { }
                default -> throw new IllegalArgumentException("invalid option '" + k + "'");
            }
            if (m.put(k, v) != null) throw new IllegalArgumentException("option '" + k + "' given twice");
        }
        return m;
    }

    static CreateOptions qcow2Options(long size, Map<String, String> opts) {
        CreateOptions co = CreateOptions.defaults(size);
        String compat = opts.getOrDefault("compat", "1.1");
        int version = switch (compat) {
            case "0.10", "v2" -> 2;
            case "1.1", "v3" -> 3;
            default -> throw new IllegalArgumentException("compat must be 0.10 or 1.1, not '" + compat + "'");
        };
        co = co.withVersion(version);
        if (opts.containsKey("cluster_size")) {
            long cs = Sizes.parse(opts.get("cluster_size"));
            if (cs < 512 || cs > (2 << 20) || Long.bitCount(cs) != 1)
                throw new IllegalArgumentException("cluster_size must be a power of two between 512 and 2M, not " + opts.get("cluster_size"));
            co = co.withClusterSize((int) cs);
        }
        int refcountBits = 16;
        if (opts.containsKey("refcount_bits")) {
            try {
                refcountBits = Integer.parseInt(opts.get("refcount_bits"));
            } catch (NumberFormatException e) {
                refcountBits = -1;
            }
            if (refcountBits < 1 || refcountBits > 64 || Integer.bitCount(refcountBits) != 1)
                throw new IllegalArgumentException("refcount_bits must be a power of two from 1 to 64, not " + opts.get("refcount_bits"));
            if (version == 2 && refcountBits != 16)
                throw new IllegalArgumentException("refcount_bits other than 16 need compat=1.1");
        }
        co = co.withRefcountBits(refcountBits);
        boolean lazy = onOff("lazy_refcounts", opts.getOrDefault("lazy_refcounts", "off"));
        if (lazy && version == 2) throw new IllegalArgumentException("lazy_refcounts=on needs compat=1.1");
        co = co.withLazyRefcounts(lazy);
        co = co.withExtendedL2(onOff("extended_l2", opts.getOrDefault("extended_l2", "off")));
        String p = opts.getOrDefault("preallocation", "off").toLowerCase(Locale.ROOT);
        Preallocation pre = switch (p) {
            case "off" -> Preallocation.OFF;
            case "metadata" -> Preallocation.METADATA;
            case "falloc" -> Preallocation.FALLOC;
            case "full" -> Preallocation.FULL;
            default -> throw new IllegalArgumentException("preallocation must be off, metadata, falloc or full, not '" + p + "'");
        };
        co = co.withPreallocation(pre);
        if (opts.containsKey("compression_type")) {
            String c = opts.get("compression_type");
            if (!c.equals("zlib") && !c.equals("zstd")) throw new IllegalArgumentException("Parameter 'compression-type' does not accept value '" + c + "'");
            co = co.withCompression(CompressionType.parse(c));
            if (version == 2 && co.compression() != CompressionType.ZLIB)
                throw new IllegalArgumentException("Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        }
        return co;
    }

    static boolean onOff(String key, String v) {
        return switch (v) {
            case "on", "true", "yes" -> true;
            case "off", "false", "no" -> false;
            default -> throw new IllegalArgumentException(key + " must be on or off, not '" + v + "'");
        };
    }
}
