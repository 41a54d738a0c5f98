package io.qblk.cli;

import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Preallocation;
import io.qblk.qcow2.Qcow2Measure;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.qblk.json.QemuJson;
import io.qblk.target.ImageFormat;
import io.qblk.target.Qcow2Target;
import io.qblk.util.Sizes;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk measure}: how large a new image would be, for a given size or for a copy of an existing
 * image (qemu-img measure's figures: the source's allocation map decides which clusters are needed).
 */
@Command(name = "measure", mixinStandardHelpOptions = true,
        description = "Compute the file size an image needs (new, or a copy of FILE), like qemu-img measure.")
public class MeasureCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--output", paramLabel = "human|json", converter = OutputFormat.Converter.class)
    OutputFormat output = OutputFormat.HUMAN;

    @Option(names = "-O", paramLabel = "FMT", description = "format of the image to measure: raw (default, as qemu-img) or qcow2")
    String outFormat = "raw";

    @Option(names = "-o", paramLabel = "OPTIONS", description = "creation options of the new image, as for create")
    java.util.List<String> options = new java.util.ArrayList<>();

    @Option(names = "--size", paramLabel = "SIZE", description = "measure a new empty image of SIZE (instead of FILE)")
    String sizeText;

    @Option(names = "-f", paramLabel = "FMT", description = "format of FILE: qcow2 or raw (probed when absent)")
    String format;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE", arity = "0..1")
    Path file;

    /** What qemu-img measure reports; {@code bitmaps} is null when it prints no bitmaps figure. */
    record Result(long required, long fullyAllocated, Long bitmaps) {}

    @Override
    public Integer call() throws IOException {
        return share.run(this::measure);
    }

    private Integer measure() throws IOException {
        if (sizeText == null && file == null) throw new IllegalArgumentException("either --size SIZE or one FILE must be given");
        if (sizeText != null && file != null) throw new IllegalArgumentException("--size SIZE cannot be used together with a FILE");
        ImageFormat fmt = ImageFormat.parse(outFormat);
        if (!fmt.hasFile()) throw new IllegalArgumentException("-O " + outFormat + ": measure sizes a qcow2 or raw image");
        Map<String, String> opts = CreateCommand.parseOptions(String.join(",", options));
        Result r;
        if (sizeText != null) {
            long size = Sizes.parse(sizeText);
            r = fmt == ImageFormat.RAW ? raw(roundUp(size, 512), opts) : qcow2(null, roundUp(size, 512), opts);
        } else {
            try (SourceImage src = SourceImage.open(file, format)) {
                long size = src.format == ImageFormat.RAW ? java.nio.file.Files.size(file) : src.size;
                r = fmt == ImageFormat.RAW ? raw(size, opts) : qcow2(src, roundUp(size, 512), opts);
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        if (output == OutputFormat.JSON) {
            ObjectNode json = QemuJson.object();
            if (r.bitmaps() != null) json.put("bitmaps", r.bitmaps());
            json.put("required", r.required());
            json.put("fully-allocated", r.fullyAllocated());
            out.println(QemuJson.pretty(json));
        } else {
            out.println("required size: " + r.required());
            out.println("fully allocated size: " + r.fullyAllocated());
            if (r.bitmaps() != null) out.println("bitmaps size: " + r.bitmaps());
        }
        return 0;
    }

    /** A raw file needs its whole size either way (unallocated sectors count, as qemu-img says). */
    static Result raw(long size, Map<String, String> opts) {
        for (String k : opts.keySet())
            if (!k.equals("preallocation")) throw new IllegalArgumentException("invalid option '" + k + "' for raw");
        return new Result(size, size, null);
    }

    /**
     * A qcow2 image of {@code virtualSize}: fully allocated = data plus all metadata; required = that
     * metadata plus the clusters the source's data touches (all data without a source, or with
     * falloc/full preallocation).
     */
    static Result qcow2(SourceImage src, long virtualSize, Map<String, String> opts) throws IOException {
        CreateOptions co = CreateCommand.qcow2Options(virtualSize, opts);
        co.validate();
        long cs = co.clusterSize();
        long data = 0;
        if (src != null) {
            long pnum;
            for (long off = 0; off < src.size; off += pnum) {
                SourceImage.Status s = src.status(off, src.size);
                pnum = s.length();
                if (s.has(SourceImage.ZERO)) continue;
                if (s.has(SourceImage.DATA) && s.has(SourceImage.ALLOCATED)) {
                    // qemu-img's count: to the end of the cluster holding the run's end, plus the run's
                    // offset within its first cluster
                    pnum = roundUp(off + pnum, cs) - off;
                    data += off % cs + pnum;
                }
            }
        }
        long aligned = roundUp(virtualSize, cs);
        if (co.preallocation() == Preallocation.FULL || co.preallocation() == Preallocation.FALLOC) data = aligned;
        long full = Qcow2Measure.fullyAllocated(virtualSize, co.clusterSize(), co.refcountBits(), co.extendedL2());
        Long bitmaps = null;
        if (src != null && co.version() >= 3 && src.format == ImageFormat.QCOW2 && qcow2Version(src) >= 3)
            bitmaps = Qcow2Measure.bitmapsSize(src.path, co.clusterSize());
        return new Result(full - aligned + data, full, bitmaps);
    }

    private static int qcow2Version(SourceImage src) throws IOException {
        return "1.1".equals(((Qcow2Target) src.target).image().info().compat()) ? 3 : 2;
    }

    private static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }
}
