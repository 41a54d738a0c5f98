package io.qblk.cli;

import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code qblk info}: what {@code qemu-img info} prints, in its human or JSON layout. */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Show an image's format, sizes and qcow2 header features.")
public class InfoCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--output", paramLabel = "human|json", converter = OutputFormat.Converter.class)
    OutputFormat output = OutputFormat.HUMAN;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 or raw (probed when absent)")
    String format;

    @Option(names = "--backing-chain", description = "also describe every backing file down the chain")
    boolean backingChain;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    /** One image's description: qemu-img's JSON object and human lines, and where its backing file is. */
    record Described(Map<String, Object> json, List<String> human, Path backing, String backingFormat) {}

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        List<Described> chain = new ArrayList<>();
        Path p = file;
        String f = format;
        while (p != null) {
            if (chain.size() > 64) throw new IOException(file + ": backing chain deeper than 64 images (a loop?)");
            Described d = describe(p, ImageFormat.resolve(f, p));
            chain.add(d);
            if (!backingChain) break;
            p = d.backing();
            f = d.backingFormat();
        }
        if (output == OutputFormat.JSON) {
            if (!backingChain) {
                out.println(QemuJson.pretty(chain.getFirst().json()));
            } else {
                StringBuilder sb = new StringBuilder("[\n");
                for (int i = 0; i < chain.size(); i++) {
                    sb.append(QemuJson.pretty(chain.get(i).json()).indent(4).stripTrailing());
                    sb.append(i + 1 < chain.size() ? ",\n" : "\n");
                }
                out.println(sb.append(']'));
            }
        } else {
            for (int i = 0; i < chain.size(); i++) {
                if (i > 0) out.println();
                chain.get(i).human().forEach(out::println);
            }
        }
        return 0;
    }

    /** qemu-img's full-backing-filename: the name as stored when absolute, else joined to the image's directory as given. */
    static String fullBackingName(Path image, String backing) {
        if (Path.of(backing).isAbsolute()) return backing;
        Path dir = image.getParent();
        return dir == null ? backing : dir + "/" + backing;
    }

    private Described describe(Path file, ImageFormat fmt) throws IOException {
        Map<String, Object> json = QemuJson.object();
        List<String> lines = new ArrayList<>();
        long actual = FileStat.allocatedBytes(file);
        if (fmt == ImageFormat.RAW) {
            long size = Files.size(file);
            json.put("virtual-size", size);
            json.put("filename", file.toString());
            json.put("format", "raw");
            json.put("actual-size", actual);
            json.put("dirty-flag", false);
            lines.add("image: " + file);
            lines.add("file format: raw");
            lines.add("virtual size: " + Sizes.human(size) + " (" + size + " bytes)");
            lines.add("disk size: " + Sizes.human(actual));
            return new Described(json, lines, null, null);
        }
        ImageInfo info;
        try (Qcow2Image img = Images.openQcow2(file, true)) {
            info = img.info();
        }
        boolean v3 = "1.1".equals(info.compat());
        String backing = info.backingFilename(), full = backing == null ? null : fullBackingName(file, backing);
        if (backing != null && info.backingFormat() != null) json.put("backing-filename-format", info.backingFormat());
        json.put("virtual-size", info.virtualSize());
        json.put("filename", file.toString());
        json.put("cluster-size", info.clusterSize());
        json.put("format", "qcow2");
        json.put("actual-size", actual);
        Map<String, Object> data = QemuJson.object();
        data.put("compat", v3 ? "1.1" : "0.10");
        data.put("compression-type", info.compressionType() == null ? "zlib" : info.compressionType());
        if (v3) data.put("lazy-refcounts", info.lazyRefcounts());
        data.put("refcount-bits", info.refcountBits());
        if (v3) {
            data.put("corrupt", info.corrupt());
            data.put("extended-l2", info.extendedL2());
        }
        Map<String, Object> specific = QemuJson.object();
        specific.put("type", "qcow2");
        specific.put("data", data);
        json.put("format-specific", specific);
        if (backing != null) {
            json.put("full-backing-filename", full);
            json.put("backing-filename", backing);
        }
        json.put("dirty-flag", info.dirtyFlag());

        lines.add("image: " + file);
        lines.add("file format: qcow2");
        lines.add("virtual size: " + Sizes.human(info.virtualSize()) + " (" + info.virtualSize() + " bytes)");
        lines.add("disk size: " + Sizes.human(actual));
        lines.add("cluster_size: " + info.clusterSize());
        if (backing != null) {
            lines.add("backing file: " + backing + (full.equals(backing) ? "" : " (actual path: " + full + ")"));
            if (info.backingFormat() != null) lines.add("backing file format: " + info.backingFormat());
        }
        lines.add("Format specific information:");
        lines.add("    compat: " + (v3 ? "1.1" : "0.10"));
        lines.add("    compression type: zlib");
        if (v3) lines.add("    lazy refcounts: " + info.lazyRefcounts());
        lines.add("    refcount bits: " + info.refcountBits());
        if (v3) {
            lines.add("    corrupt: " + info.corrupt());
            lines.add("    extended l2: " + info.extendedL2());
        }
        if (info.dirtyFlag()) lines.add("cleanly shut down: no");
        Path backingPath = backing == null ? null : Path.of(full);
        return new Described(json, lines, backingPath, info.backingFormat());
    }
}
