package io.qblk.target;

/** The contract for the null target: it stores nothing, reads zeroes, has no file to fail. */
class NullTargetContractTest extends BlockTargetContractTest {
    @Override ImageFormat format() { return ImageFormat.NULL; }
    @Override Faulty openFaulty() { return null; }
    @Override boolean stores() { return false; }
}
