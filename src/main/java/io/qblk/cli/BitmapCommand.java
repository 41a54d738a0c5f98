package io.qblk.cli;

import io.qblk.qcow2.BitmapOp;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import io.qblk.util.Sizes;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk bitmap}: {@code qemu-img bitmap}'s persistent dirty bitmap operations on a qcow2
 * image, applied in the order given: {@code --add [-g GRANULARITY]}, {@code --remove},
 * {@code --clear}, {@code --enable}, {@code --disable}. Exit code 0, or 1 with a message.
 */
@Command(name = "bitmap", mixinStandardHelpOptions = true,
        description = "Add, remove, clear, enable or disable a persistent dirty bitmap of a qcow2 image (like qemu-img bitmap).",
        exitCodeListHeading = "Exit codes:%n", exitCodeList = {"0:done", "1:error"})
public class BitmapCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--add", description = "create the bitmap (enabled, all clean)") boolean add;
    @Option(names = "--remove", description = "delete the bitmap") boolean remove;
    @Option(names = "--clear", description = "mark every block clean") boolean clear;
    @Option(names = "--enable", description = "track writes from now on") boolean enable;
    @Option(names = "--disable", description = "stop tracking writes") boolean disable;

    @Option(names = "-g", paramLabel = "GRANULARITY", description = "with --add: bytes per bit (a power of 2, 512 to 2G; default: the cluster size within 4k..64k)")
    String granularity;

    @Option(names = "-f", paramLabel = "FMT", description = "image format (qcow2)")
    String format;

    @Parameters(index = "0", paramLabel = "FILE") Path file;
    @Parameters(index = "1", paramLabel = "BITMAP") String name;

    @Override
    public Integer call() throws IOException {
        if (format != null && !format.equals("qcow2")) throw new IllegalArgumentException("-f " + format + ": bitmaps need a qcow2 image");
        List<BitmapOp> ops = new ArrayList<>();
        for (OptionSpec o : spec.commandLine().getParseResult().matchedOptions()) {
            switch (o.longestName()) {
                case "--add" -> ops.add(BitmapOp.ADD);
                case "--remove" -> ops.add(BitmapOp.REMOVE);
                case "--clear" -> ops.add(BitmapOp.CLEAR);
                case "--enable" -> ops.add(BitmapOp.ENABLE);
                case "--disable" -> ops.add(BitmapOp.DISABLE);
                default -> {}
            }
        }
        if (ops.isEmpty()) throw new IllegalArgumentException("Need at least one of --add, --remove, --clear, --enable, --disable");
        if (granularity != null && !ops.contains(BitmapOp.ADD)) throw new IllegalArgumentException("granularity only supported with --add");
        long g = granularity == null ? 0 : Sizes.parse(granularity);
        if (ImageFormat.probe(file) != ImageFormat.QCOW2) throw new IllegalArgumentException(file + ": not a qcow2 image (bitmaps need qcow2)");
        for (BitmapOp op : ops) {
            try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults())) {
                img.editBitmap(op, name, op == BitmapOp.ADD ? g : 0);
            }
        }
        return 0;
    }
}
