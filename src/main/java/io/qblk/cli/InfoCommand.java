package io.qblk.cli;

import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
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

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        return share.run(this::info);
    }

    private Integer info() throws IOException {
        ImageFormat fmt = ImageFormat.resolve(format, file);
        Map<String, Object> json = QemuJson.object();
        long actual = FileStat.allocatedBytes(file);
        PrintWriter out = spec.commandLine().getOut();
        if (fmt == ImageFormat.RAW) {
            long size = Files.size(file);
            if (output == OutputFormat.JSON) {
                json.put("virtual-size", size);
                json.put("filename", file.toString());
                json.put("format", "raw");
                json.put("actual-size", actual);
                json.put("dirty-flag", false);
                out.println(QemuJson.pretty(json));
            } else {
                out.println("image: " + file);
                out.println("file format: raw");
                out.println("virtual size: " + Sizes.human(size) + " (" + size + " bytes)");
                out.println("disk size: " + Sizes.human(actual));
            }
            return 0;
        }
        ImageInfo info;
        try (Qcow2Image img = Images.openQcow2(file, true)) {
            info = img.info();
        }
        boolean v3 = "1.1".equals(info.compat());
        if (output == OutputFormat.JSON) {
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
            json.put("dirty-flag", info.dirtyFlag());
            out.println(QemuJson.pretty(json));
            return 0;
        }
        out.println("image: " + file);
        out.println("file format: qcow2");
        out.println("virtual size: " + Sizes.human(info.virtualSize()) + " (" + info.virtualSize() + " bytes)");
        out.println("disk size: " + Sizes.human(actual));
        out.println("cluster_size: " + info.clusterSize());
        out.println("Format specific information:");
        out.println("    compat: " + (v3 ? "1.1" : "0.10"));
        out.println("    compression type: zlib");
        if (v3) out.println("    lazy refcounts: " + info.lazyRefcounts());
        out.println("    refcount bits: " + info.refcountBits());
        if (v3) {
            out.println("    corrupt: " + info.corrupt());
            out.println("    extended l2: " + info.extendedL2());
        }
        if (info.dirtyFlag()) out.println("cleanly shut down: no");
        return 0;
    }
}
