package io.qblk.cli;

import io.qblk.json.QemuJson;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
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

/** {@code qblk map}: which guest ranges are allocated, zero or data, and where they live in the file. */
@Command(name = "map", mixinStandardHelpOptions = true, description = "Show the allocation map of an image, like qemu-img map.")
public class MapCommand implements Callable<Integer> {
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
        return share.run(this::map);
    }

    private Integer map() throws IOException {
        ImageFormat fmt = ImageFormat.resolve(format, file);
        List<MapEntry> entries;
        Path mappedTo = file;
        if (fmt == ImageFormat.RAW) {
            entries = rawEntries(file);
        } else {
            try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(true))) {
                entries = merge(img.map(0, img.virtualSize()));
                // offsets of an image with an external data file are in that file, named as qemu names it
                mappedTo = TargetOpener.dataFilePath(file, img);
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        if (output == OutputFormat.JSON) out.println(QemuJson.mapText(entries));
        else human(out, entries, mappedTo);
        return 0;
    }

    /** A raw file maps to itself: data ranges as data, holes as zeroes (like qemu-img map on raw). */
    static List<MapEntry> rawEntries(Path file) throws IOException {
        long size = Files.size(file), pos = 0;
        List<MapEntry> out = new ArrayList<>();
        for (long[] d : FileStat.dataRanges(file)) {
            if (d[0] > pos) out.add(new MapEntry(pos, d[0] - pos, 0, true, true, false, pos));
            out.add(new MapEntry(d[0], d[1] - d[0], 0, true, false, true, d[0]));
            pos = d[1];
        }
        if (pos < size) out.add(new MapEntry(pos, size - pos, 0, true, true, false, pos));
        return out;
    }

    /** Joins neighbours qemu-img would print as one line (same flags, file offsets contiguous). */
    static List<MapEntry> merge(List<MapEntry> in) {
        List<MapEntry> out = new ArrayList<>();
        for (MapEntry e : in) {
            if (!out.isEmpty()) {
                MapEntry p = out.getLast();
                boolean sameKind = p.depth() == e.depth() && p.present() == e.present() && p.zero() == e.zero()
                        && p.data() == e.data() && p.start() + p.length() == e.start();
                boolean offsets = (p.offset() < 0 && e.offset() < 0)
                        || (p.offset() >= 0 && e.offset() == p.offset() + p.length());
                if (sameKind && offsets) {
                    out.set(out.size() - 1, new MapEntry(p.start(), p.length() + e.length(), p.depth(), p.present(),
                            p.zero(), p.data(), p.offset()));
                    continue;
                }
            }
            out.add(e);
        }
        return out;
    }

    private static void human(PrintWriter out, List<MapEntry> entries, Path mappedTo) {
        out.println(String.format("%-16s%-16s%-16s%s", "Offset", "Length", "Mapped to", "File"));
        for (MapEntry e : entries) {
            if (!e.data() || e.offset() < 0) continue;
            out.println(String.format("%-16s%-16s%-16s%s", hex(e.start()), hex(e.length()), hex(e.offset()), mappedTo));
        }
    }

    private static String hex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }
}
