package io.qblk.cli;

import io.qblk.json.QemuJson;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk check}: consistency check (and optional repair) with qemu-img check's output and exit
 * codes: 0 clean, 1 check not completed, 2 corruptions, 3 leaks only.
 */
@Command(name = "check", mixinStandardHelpOptions = true, description = "Check a qcow2 image for corruptions and leaked clusters; -r repairs.",
        exitCodeListHeading = "Exit codes:%n",
        exitCodeList = {"0:no errors", "1:the check could not be completed", "2:corruptions found",
                "3:leaked clusters found (no corruption)"})
public class CheckCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-r", paramLabel = "leaks|all", description = "repair leaks only, or leaks and corruptions")
    String repair;

    @Option(names = "--output", paramLabel = "human|json", converter = OutputFormat.Converter.class)
    OutputFormat output = OutputFormat.HUMAN;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws IOException {
        RepairMode mode = repair == null ? RepairMode.NONE : switch (repair.toLowerCase(Locale.ROOT)) {
            case "leaks" -> RepairMode.LEAKS;
            case "all" -> RepairMode.ALL;
            default -> throw new IllegalArgumentException("-r must be 'leaks' or 'all', not '" + repair + "'");
        };
        if (share.on && mode != RepairMode.NONE)
            throw new IllegalArgumentException("-U/--force-share opens read-only: it cannot be combined with -r");
        if (ImageFormat.probe(file) != ImageFormat.QCOW2)
            throw new IllegalArgumentException(file + ": not a qcow2 image (check supports qcow2 only)");
        CheckReport r;
        r = share.run(() -> {
            try (Qcow2Image img = TargetOpener.openImage(file, TargetOptions.defaults().withReadOnly(mode == RepairMode.NONE))) {
                return img.check(mode);
            }
        });
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (r.messages() != null) for (String m : r.messages()) err.println(m);
        err.flush();
        if (output == OutputFormat.JSON) out.println(QemuJson.pretty(QemuJson.check(r)));
        else if (!quiet) human(out, r);
        if (r.checkErrors() > 0) return 1;
        if (r.corruptions() > 0) return 2;
        if (r.leaks() > 0) return 3;
        return 0;
    }

    private static void human(PrintWriter out, CheckReport r) {
        if (r.leaksFixed() > 0 || r.corruptionsFixed() > 0) {
            out.println("The following inconsistencies were found and repaired:");
            out.println();
            out.println("    " + r.leaksFixed() + " leaked clusters");
            out.println("    " + r.corruptionsFixed() + " corruptions");
            out.println();
            out.println("Double checking the fixed image now...");
        }
        if (r.corruptions() == 0 && r.leaks() == 0 && r.checkErrors() == 0) {
            out.println("No errors were found on the image.");
        } else {
            if (r.corruptions() > 0) {
                out.println();
                out.println(r.corruptions() + " errors were found on the image.");
                out.println("Data may be corrupted, or further writes to the image may corrupt it.");
            }
            if (r.leaks() > 0) {
                out.println();
                out.println(r.leaks() + " leaked clusters were found on the image.");
                out.println("This means waste of disk space, but no harm to data.");
            }
            if (r.checkErrors() > 0) {
                out.println();
                out.println(r.checkErrors() + " internal errors have occurred during the check.");
            }
        }
        if (r.totalClusters() > 0 && r.allocatedClusters() > 0) {
            double t = r.totalClusters();
            out.println(String.format(Locale.ROOT, "%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters",
                    r.allocatedClusters(), r.totalClusters(), r.allocatedClusters() * 100.0 / t,
                    r.fragmentedClusters() * 100.0 / r.allocatedClusters(), r.compressedClusters() * 100.0 / r.allocatedClusters()));
        }
        if (r.imageEndOffset() > 0) out.println("Image end offset: " + r.imageEndOffset());
    }
}
