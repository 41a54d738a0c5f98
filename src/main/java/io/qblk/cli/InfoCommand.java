package io.qblk.cli;

import io.qblk.util.Sizes;
import io.qblk.json.QemuJson;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
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
        long actual = FileStat.allocatedBytes(file);
        PrintWriter out = spec.commandLine().getOut();
        if (fmt == ImageFormat.RAW) {
            long size = Files.size(file);
            if (output == OutputFormat.JSON) {
                out.println(QemuJson.pretty(QemuJson.rawInfo(file.toString(), size, actual)));
            } else {
                out.println("image: " + file);
                out.println("file format: raw");
                out.println("virtual size: " + Sizes.human(size) + " (" + size + " bytes)");
                out.println("disk size: " + Sizes.human(actual));
            }
            return 0;
        }
        ImageInfo info;
        // Like qemu-img info, the backing chain is named, not opened: its name is untrusted input,
        // shown so a user sees what an export would read through (e.g. /etc/shadow).
        try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(true).withBacking(BackingPolicy.NOT_OPENED))) {
            info = img.info();
        }
        String backing = info.backingFilename();
        String fullBacking = backing == null ? null : QemuJson.fullBackingName(file.toString(), backing);
        if (output == OutputFormat.JSON) {
            out.println(QemuJson.pretty(QemuJson.info(info, actual)));
            return 0;
        }
        boolean v3 = "1.1".equals(info.compat());
        out.println("image: " + file);
        out.println("file format: qcow2");
        out.println("virtual size: " + Sizes.human(info.virtualSize()) + " (" + info.virtualSize() + " bytes)");
        out.println("disk size: " + Sizes.human(actual));
        out.println("cluster_size: " + info.clusterSize());
        if (backing != null) {
            out.println("backing file: " + backing + (fullBacking.equals(backing) ? "" : " (actual path: " + fullBacking + ")"));
            if (info.backingFormat() != null) out.println("backing file format: " + info.backingFormat());
        }
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
