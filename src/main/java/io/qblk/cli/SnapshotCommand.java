package io.qblk.cli;

import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk snapshot -l|-c NAME|-a NAME|-d NAME FILE}: internal snapshots with qemu-img snapshot's
 * semantics: -a finds a snapshot by ID, then by name; -d by name only (the first with that name);
 * -c gives the next free numeric ID and allows duplicate names; no action does nothing. Exit 0, or 1
 * with one line on failure.
 */
@Command(name = "snapshot", mixinStandardHelpOptions = true, description = "List, create, apply or delete internal snapshots of a qcow2 image.",
        exitCodeListHeading = "Exit codes:%n", exitCodeList = {"0:done", "1:failed (no such snapshot, bad options, I/O error)"})
public class SnapshotCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-l", description = "list the snapshots")
    boolean list;

    @Option(names = "-c", paramLabel = "NAME", description = "create a snapshot of the current contents")
    String create;

    @Option(names = "-a", paramLabel = "NAME", description = "apply (revert the image to) a snapshot, by ID or name")
    String apply;

    @Option(names = "-d", paramLabel = "NAME", description = "delete the first snapshot with this name")
    String delete;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 (the only format with internal snapshots)")
    String format;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        int actions = (list ? 1 : 0) + (create != null ? 1 : 0) + (apply != null ? 1 : 0) + (delete != null ? 1 : 0);
        if (actions > 1) throw new IllegalArgumentException("Cannot mix '-l', '-a', '-c', '-d'");
        if (share.on && !list) throw new IllegalArgumentException("-U/--force-share opens read-only: it only goes with -l");
        if (ImageFormat.resolve(format, file) != ImageFormat.QCOW2)
            throw new IllegalArgumentException(file + ": not a qcow2 image (only qcow2 has internal snapshots)");
        if (actions == 0) return 0;
        PrintWriter out = spec.commandLine().getOut();
        return share.run(() -> {
            try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(list))) {
                if (list) SnapshotList.lines(img.snapshots()).forEach(out::println);
                else if (create != null) run("create", create, () -> img.createSnapshot(create));
                else if (apply != null) run("apply", apply, () -> img.applySnapshot(apply));
                else run("delete", delete, () -> img.deleteSnapshot(delete));
            }
            return 0;
        });
    }

    private interface Action {
        void run() throws IOException;
    }

    /** qemu-img's wording: "Could not apply snapshot 'X': ...". */
    private static void run(String verb, String name, Action a) throws IOException {
        try {
            a.run();
        } catch (Qcow2Exception e) {
            String why = e.kind() == Qcow2Exception.Kind.NOT_FOUND ? "snapshot not found" : CliErrors.message(e);
            throw new Qcow2Exception(e.kind(), "Could not " + verb + " snapshot '" + name + "': " + why, e);
        }
    }
}
