package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk rebase}: gives FILE another backing file, like {@code qemu-img rebase}. Safe mode
 * (default) first copies into FILE every range FILE does not hold itself whose contents differ
 * between the old and the new backing chain, flushes, and only then rewrites the header
 * (one sector, docs/ordering.md R11 and C3; {@link ChainWrites#rebase}): a crash leaves the old backing file
 * with some extra (identical) data in FILE, or the new one. {@code -u} only rewrites the header.
 * {@code -b ""} removes the backing file (safe mode copies everything FILE reads from it).
 */
@Command(name = "rebase", mixinStandardHelpOptions = true,
        description = "Change the backing file of FILE, like qemu-img rebase (safe: copies what differs first; -u: header only).")
public class RebaseCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "format of FILE (qcow2; probed when absent)")
    String format;

    @Option(names = "-b", paramLabel = "BACKING", description = "the new backing file (stored as given; relative to FILE's directory); \"\" removes it")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "format of the new backing file: qcow2 or raw")
    String backingFormat;

    @Option(names = "-u", description = "unsafe: only rewrite the header, copy nothing")
    boolean unsafe;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        if (backing == null) throw new IllegalArgumentException("Must specify backing file (-b) or use unsafe mode (-u)");
        boolean remove = backing.isEmpty();
        if (!remove && backingFormat == null)
            throw new IllegalArgumentException("Could not change the backing file to '" + backing + "': backing format must be specified (-F qcow2|raw)");
        ImageFormat newFmt = remove ? null : ImageFormat.parse(backingFormat);
        if (newFmt != null && !newFmt.hasFile()) throw new IllegalArgumentException("-F " + backingFormat + ": a backing file is qcow2 or raw");
        ImageFormat fmt = ImageFormat.resolve(format, file);
        if (fmt != ImageFormat.QCOW2) throw new IllegalArgumentException(file + ": only qcow2 images have a backing file to change");
        String newName = remove ? null : backing, newFmtName = remove ? null : newFmt.id();
        try (PosixFileBackend f = PosixFileBackend.open(file, false)) { // FILE's write lock, for the copy and the header
            if (unsafe) {
                ChainWrites.rebase(f, null, null, newName, newFmtName, size -> {});
                return 0;
            }
            Path newPath = remove ? null : ImageChain.resolve(file, backing);
            if (newPath != null && !Files.exists(newPath))
                throw new IOException("Could not open new backing file '" + backing + "': " + newPath + ": no such file");
            // qemu-img's figures: the image walked in 2 MiB steps, each worth the same share
            Progress p = Progress.of(spec.commandLine().getOut(), progress && !quiet, 2.0);
            int chunk = ConvertCommand.CHUNK;
            try (BlockTarget nb = newPath == null ? null : openNew(newPath, newFmt)) {
                p.start();
                ChainWrites.rebase(f, () -> Qcow2Image.open(f, OpenOptions.defaults(), file), nb, newName, newFmtName,
                        size -> p.set(p.percent() + (size == 0 ? 100f : 100f / (size / Math.min(size, chunk)))));
                p.finish();
            }
        }
        return 0;
    }

    private BlockTarget openNew(Path p, ImageFormat fmt) throws IOException {
        try {
            return TargetOpener.open(p, TargetOptions.defaults().withFormat(fmt).withReadOnly(true));
        } catch (IOException | RuntimeException e) {
            throw new IOException("Could not open new backing file '" + backing + "': " + CliErrors.message(e), e);
        }
    }
}
