package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk commit}: writes what FILE (and every image between it and BASE) holds into BASE, like
 * {@code qemu-img commit}. Without {@code -b} BASE is FILE's backing file and FILE is emptied
 * afterwards (its clusters unallocated, so it reads BASE again) unless {@code -d}; {@code -b} implies
 * {@code -d}, as in qemu-img (the images between would no longer read right if FILE were emptied).
 *
 * <p>Order ({@link ChainWrites#commit}, docs/ordering.md C1-C2): BASE is written and flushed
 * (durable) before FILE is emptied, so a crash leaves either the data in both or FILE not yet emptied. Each image is locked for writing while it is written
 * (BASE during the copy, FILE while it is emptied); the layers read are locked for reading.
 */
@Command(name = "commit", mixinStandardHelpOptions = true,
        description = "Commit the changes of FILE (and the images down to BASE) into its backing file, like qemu-img commit.")
public class CommitCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "format of FILE (qcow2; probed when absent)")
    String format;

    @Option(names = "-b", paramLabel = "BASE", description = "the image of FILE's backing chain to commit into (default: FILE's backing file); implies -d")
    String base;

    @Option(names = "-d", description = "do not empty FILE after the commit")
    boolean keep;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        List<ImageChain.Layer> chain = ImageChain.of(file, format);
        if (chain.size() < 2) throw new IllegalArgumentException("Image does not have a backing file");
        int baseIndex = 1;
        if (base != null) {
            baseIndex = ImageChain.indexOf(chain, base, Path.of(base));
            if (baseIndex < 0) throw new IllegalArgumentException("Did not find '" + base + "' in the backing chain of '" + file + "'");
        }
        ImageChain.Layer baseLayer = chain.get(baseIndex);
        List<ImageChain.Layer> above = chain.subList(0, baseIndex);
        long size;
        try (Qcow2Image top = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(true).withBacking(io.qblk.qcow2.BackingPolicy.NOT_OPENED))) {
            size = top.virtualSize();
        }
        boolean empty = base == null && !keep;
        // internal snapshots in FILE or BASE are kept (writes and the emptying copy shared tables and clusters, S1-S2)
        if (empty) {
            try (PosixFileBackend f = PosixFileBackend.open(file, false); Qcow2Image top = Qcow2Image.open(f, OpenOptions.defaults(), file)) {
                // FILE opens for writing (not corrupt, not locked by another writer) before BASE changes
            }
        }
        growBase(baseLayer, size);

        Progress p = Progress.of(spec.commandLine().getOut(), progress && !quiet, 1.0);
        long total = 0;
        for (ImageChain.Layer l : above) total += ImageChain.ownBytes(l.path());
        p.start();
        final long all = total;
        List<ChainWrites.Opener<Qcow2Image>> layers = above.stream().<ChainWrites.Opener<Qcow2Image>>map(l -> () -> TargetOpener.openImage(l.path(),
                TargetOptions.defaults().withReadOnly(true).withBacking(io.qblk.qcow2.BackingPolicy.NOT_OPENED))).toList();
        ChainWrites.Step emptyTop = !empty ? null : () -> {
            try (PosixFileBackend f = PosixFileBackend.open(file, false); Qcow2Image top = Qcow2Image.open(f, OpenOptions.defaults(), file)) {
                ChainWrites.empty(top);
            }
        };
        ChainWrites.commit(() -> TargetOpener.open(baseLayer.path(), TargetOptions.defaults().withFormat(baseLayer.format())), layers, emptyTop, done -> {
            if (all > 0) p.set(100.0 * done / all);
        });
        p.finish();
        if (!quiet) spec.commandLine().getOut().println("Image committed.");
        return 0;
    }

    /** qemu grows a BASE smaller than FILE before committing into it. */
    private static void growBase(ImageChain.Layer base, long size) throws IOException {
        if (base.format() == ImageFormat.RAW) {
            try (PosixFileBackend f = PosixFileBackend.open(base.path(), false)) {
                if (f.size() < size) {
                    f.truncate(size);
                    f.datasync();
                }
            }
            return;
        }
        try (PosixFileBackend f = PosixFileBackend.open(base.path(), false); Qcow2Image img = Qcow2Image.open(f, OpenOptions.defaults(), base.path())) {
            if (img.virtualSize() < size) img.resize((size + 511) / 512 * 512);
        }
    }
}
