package io.qblk.cli;

import io.quarkus.picocli.runtime.annotations.TopCommand;
import picocli.CommandLine.Command;

@TopCommand
@Command(name = "qblk", mixinStandardHelpOptions = true, version = "qblk 0.1.0",
        description = "Serve qcow2 images as Linux block devices (ublk, NBD) and work on them offline.",
        subcommands = {CreateCommand.class, InfoCommand.class, CheckCommand.class, MapCommand.class, CompareCommand.class,
                MeasureCommand.class, ConvertCommand.class, ResizeCommand.class, CommitCommand.class, RebaseCommand.class, AmendCommand.class, SnapshotCommand.class,
                IoCommand.class, BenchCommand.class, ExportCommand.class, UblkCommand.class,
                ServeCommand.class, DeviceCommand.class, BitmapCommand.class})
public class QblkCommand {
}
