package io.qblk.nbd;

/** {@link NbdErrorKindsTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdErrorKindsCarrierTest extends NbdErrorKindsTest implements NbdVariant.OnCarrier {
}
