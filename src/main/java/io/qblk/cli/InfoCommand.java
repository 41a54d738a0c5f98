package io.qblk.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.qblk.util.Sizes;
import io.qblk.json.QemuJson;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.BitmapInfo;
import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.SnapshotInfo;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
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

    @Option(names = "--backing-chain", description = "also describe every backing file down the chain")
    boolean backingChain;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    /** One image's description: qemu-img's JSON object and human lines, and where its backing file is. */
    record Described(ObjectNode json, List<String> human, Path backing, String backingFormat) {}

    @Override
    public Integer call() throws IOException {
        return share.run(this::info);
    }

    private Integer info() throws IOException {
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

    private Described describe(Path file, ImageFormat fmt) throws IOException {
        List<String> lines = new ArrayList<>();
        long actual = FileStat.allocatedBytes(file);
        if (fmt == ImageFormat.RAW) {
            long size = Files.size(file);
            lines.add("image: " + file);
            lines.add("file format: raw");
            lines.add("virtual size: " + Sizes.human(size) + " (" + size + " bytes)");
            lines.add("disk size: " + Sizes.human(actual));
            return new Described(QemuJson.rawInfo(file.toString(), size, actual), lines, null, null);
        }
        if (fmt != ImageFormat.QCOW2) throw new IllegalArgumentException("-f " + fmt + ": info needs an image file (qcow2 or raw)");
        ImageInfo info;
        List<SnapshotInfo> snapshots;
        List<BitmapInfo> bitmaps;
        // Like qemu-img info, the backing chain is named, not opened: its name is untrusted input,
        // shown so a user sees what an export would read through (e.g. /etc/shadow). --backing-chain
        // describes each named file in turn, opening each as its own image without following further.
        try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(true).withBacking(BackingPolicy.NOT_OPENED))) {
            info = img.info();
            snapshots = img.snapshots();
            bitmaps = img.bitmaps();
        }
        String backing = info.backingFilename();
        String full = backing == null ? null : QemuJson.fullBackingName(file.toString(), backing);
        lines.add("image: " + file);
        lines.add("file format: qcow2");
        lines.add("virtual size: " + Sizes.human(info.virtualSize()) + " (" + info.virtualSize() + " bytes)");
        lines.add("disk size: " + Sizes.human(actual));
        if (info.encryption() != null) lines.add("encrypted: yes");
        lines.add("cluster_size: " + info.clusterSize());
        if (backing != null) {
            lines.add("backing file: " + backing + (full.equals(backing) ? "" : " (actual path: " + full + ")"));
            if (info.backingFormat() != null) lines.add("backing file format: " + info.backingFormat());
        }
        lines.addAll(SnapshotList.lines(snapshots));
        lines.add("Format specific information:");
        ObjectNode json = QemuJson.withSnapshots(QemuJson.withBitmaps(QemuJson.info(info, actual), bitmaps), snapshots);
        QemuJson.humanLines(json.get("format-specific").get("data"), "    ", lines);
        if (info.dirtyFlag()) lines.add("cleanly shut down: no");
        Path backingPath = backing == null ? null : Path.of(full);
        return new Described(json, lines, backingPath, info.backingFormat());
    }
}
