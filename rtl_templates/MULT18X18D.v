// Written by hwgen: behavioural model of the Lattice ECP5 MULT18X18D as hwgen uses it
// (registers on CLK0 with clock enable CE0, no reset; C, shift chains and CLK1-3 unused).
module MULT18X18D(
  input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
  input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
  input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
  input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
  output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
  output P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
  output SIGNEDP
);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0", REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CE = "CE0", REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE", REG_INPUTC_CE = "CE0", REG_INPUTC_RST = "RST0";
  parameter REG_PIPELINE_CE = "CE0", REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CE = "CE0", REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED", CLK1_DIV = "ENABLED", CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED", HIGHSPEED_CLK = "NONE", GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE", SOURCEB_MODE = "B_SHIFT", MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2,
                      A1, A0};
  wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2,
                      B1, B0};
  reg [17:0] a_q, b_q;
  reg sa_q, sb_q;
  always @(posedge CLK0) if (CE0) begin a_q <= a_in; b_q <= b_in; sa_q <= SIGNEDA; sb_q <= SIGNEDB; end
  wire [17:0] a = REG_INPUTA_CLK == "NONE" ? a_in : a_q;
  wire [17:0] b = REG_INPUTB_CLK == "NONE" ? b_in : b_q;
  wire sa = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_q;
  wire sb = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_q;
  wire signed [18:0] a_ext = {sa & a[17], a};
  wire signed [18:0] b_ext = {sb & b[17], b};
  wire signed [37:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  reg [35:0] pipe_q, out_q;
  always @(posedge CLK0) if (CE0) pipe_q <= product;
  wire [35:0] piped = REG_PIPELINE_CLK == "NONE" ? product : pipe_q;
  always @(posedge CLK0) if (CE0) out_q <= piped;
  wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? piped : out_q;
  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
          P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
          P0} = p;
  assign SIGNEDP = sa | sb;
endmodule
